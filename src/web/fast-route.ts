import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * A route answered straight from Node's request, ahead of express, for an endpoint programs hit thousands of times
 * a second (Keap's HTTP Posts): express's request wrapping, router and response helpers cost more than the work.
 * Returns false, having touched nothing, to leave the request to express. `clientIp` is the client's address as
 * express's `req.ip` gives it (the app's `trust proxy` applied).
 */
export type FastRoute = (req: IncomingMessage, res: ServerResponse, clientIp: (req: IncomingMessage) => string) => boolean;
