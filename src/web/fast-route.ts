import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * A route answered straight from Node's request, ahead of express, for an endpoint programs hit thousands of times
 * a second (Keap's HTTP Posts): express's request wrapping, router and response helpers cost more than the work.
 * Returns false, having touched nothing, to leave the request to express. `clientIp` is the client's address as
 * express's `req.ip` gives it (the app's `trust proxy` applied).
 */
export type FastRoute = (req: IncomingMessage, res: ServerResponse, clientIp: (req: IncomingMessage) => string) => boolean;

/**
 * A fast route's body as UTF-8 text, or undefined when it runs past `limitBytes` (the request is then destroyed: a
 * route checks the length header first, and this holds a client to what it announced).
 */
export function readFastRouteBody(req: IncomingMessage, limitBytes: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) {
        req.destroy();
        resolve(undefined);
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
