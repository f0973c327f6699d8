import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the token endpoint answered (or refused), as the endpoint understood it. */
export interface TokenCall {
  grantType: string;
  clientId: string | undefined;
  scope: string | undefined;
  /** How the client authenticated: HTTP Basic (RFC 6749 2.3.1), in the form body, or not at all. */
  clientAuth: 'basic' | 'body' | 'none';
  contentType: string | undefined;
  status: number;
  /** The token issued, when one was. */
  token?: string;
}

export interface OAuthServerOptions {
  clients?: Record<string, string>;
  /** Resource owners for the password grant. */
  users?: Record<string, string>;
  /** JWTs the JWT bearer grant accepts (RFC 7523), each for a subject. */
  assertions?: string[];
  /** Scopes a client may ask for; a scope outside gets `invalid_scope`. Unset: any. */
  scopes?: string[];
  /** expires_in of the tokens issued, in seconds; null leaves it out of the answer. */
  expiresIn?: number | null;
  tokenType?: string;
}

export interface TestOAuthServer {
  /** `http://127.0.0.1:PORT/oauth/token` */
  tokenUrl: string;
  /** `http://127.0.0.1:PORT/resource`: a receiver that answers 200 with a token it issued and not revoked, else 401. */
  resourceUrl: string;
  calls: TokenCall[];
  /** Tokens issued and still accepted by the resource. */
  valid: Set<string>;
  /** The resource stops accepting every token issued so far (as when they expire on the server's side). */
  revokeAll(): void;
  /** The next `count` token requests get this answer. */
  failNext(count: number, status: number, body: unknown): void;
  options: OAuthServerOptions;
  close(): Promise<void>;
}

/**
 * A real OAuth 2.0 token endpoint on loopback (RFC 6749 section 4.3 and 4.4, RFC 7523 section 2.1), checking the
 * grant, the client's credentials, the resource owner's, the assertion and the scope, answering as RFC 6749 5.1
 * and 5.2 say (JSON, `error` and `error_description`, 401 with WWW-Authenticate for a bad client), and a resource
 * beside it that accepts the tokens it issued.
 */
export async function startOAuthServer(options: OAuthServerOptions = {}): Promise<TestOAuthServer> {
  const clients = options.clients ?? { 'client-1': 'secret:with&odd=chars' };
  const users = options.users ?? { ada: 'lovelace-1815' };
  const assertions = new Set(options.assertions ?? []);
  const calls: TokenCall[] = [];
  const valid = new Set<string>();
  const failures: Array<{ status: number; body: unknown }> = [];
  let issued = 0;

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
    res.end(JSON.stringify(body));
  };

  const token = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
    const grantType = form.get('grant_type') ?? '';
    const call: TokenCall = { grantType, clientId: undefined, scope: form.get('scope') ?? undefined, clientAuth: 'none', contentType: req.headers['content-type'], status: 0 };
    calls.push(call);
    const answer = (status: number, body: unknown, headers?: Record<string, string>) => {
      call.status = status;
      send(res, status, body, headers);
    };
    const failure = failures.shift();
    if (failure) return answer(failure.status, failure.body);
    if (req.method !== 'POST' || !call.contentType?.startsWith('application/x-www-form-urlencoded')) {
      return answer(400, { error: 'invalid_request', error_description: 'expected a form POST' });
    }

    let clientId: string | undefined;
    let clientSecret: string | undefined;
    const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
    if (basic) {
      const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      // RFC 6749 2.3.1: both parts were form-encoded before being joined.
      const decode = (part: string) => decodeURIComponent(part.replace(/\+/g, ' '));
      clientId = decode(decoded.slice(0, colon));
      clientSecret = decode(decoded.slice(colon + 1));
      call.clientAuth = 'basic';
    } else if (form.has('client_id')) {
      clientId = form.get('client_id') ?? undefined;
      clientSecret = form.get('client_secret') ?? undefined;
      call.clientAuth = 'body';
    }
    call.clientId = clientId;
    if (clientId === undefined || clients[clientId] === undefined || clients[clientId] !== clientSecret) {
      return answer(401, { error: 'invalid_client', error_description: 'Client authentication failed' }, { 'www-authenticate': 'Basic realm="token"' });
    }

    if (grantType === 'password') {
      const username = form.get('username') ?? '';
      if (users[username] === undefined || users[username] !== form.get('password')) {
        return answer(400, { error: 'invalid_grant', error_description: 'The resource owner credentials are not valid' });
      }
    } else if (grantType === 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      if (!assertions.has(form.get('assertion') ?? '')) return answer(400, { error: 'invalid_grant', error_description: 'The assertion is not valid' });
    } else if (grantType !== 'client_credentials') {
      return answer(400, { error: 'unsupported_grant_type' });
    }

    if (call.scope !== undefined && options.scopes && !call.scope.split(' ').every((scope) => options.scopes!.includes(scope))) {
      return answer(400, { error: 'invalid_scope', error_description: `Unknown scope in "${call.scope}"` });
    }

    const accessToken = `at-${++issued}`;
    valid.add(accessToken);
    call.token = accessToken;
    const expiresIn = options.expiresIn === undefined ? 3600 : options.expiresIn;
    return answer(200, {
      access_token: accessToken,
      token_type: options.tokenType ?? 'Bearer',
      ...(expiresIn === null ? {} : { expires_in: expiresIn }),
      ...(call.scope ? { scope: call.scope } : {}),
    });
  };

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/oauth/token') {
      token(req, res).catch(() => res.destroy());
      return;
    }
    if (path === '/resource') {
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
      if (bearer && valid.has(bearer[1]!)) return send(res, 200, { ok: true });
      return send(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
    }
    send(res, 404, { error: 'not_found' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const base = `http://127.0.0.1:${port}`;
  return {
    tokenUrl: `${base}/oauth/token`,
    resourceUrl: `${base}/resource`,
    calls,
    valid,
    revokeAll: () => valid.clear(),
    failNext: (count, status, body) => {
      for (let i = 0; i < count; i++) failures.push({ status, body });
    },
    options,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
