import express, { type Request, type Response, type Router } from 'express';
import { OAuthError, type SandboxOAuthServer } from './oauth-server.js';

/**
 * `POST /token` as Keap documents it, and an authorize page that approves at once.
 * - grant_type=authorization_code: client_id and client_secret in the form body (as Keap's guide shows).
 * - grant_type=refresh_token: client credentials only in `Authorization: Basic base64(id:secret)`.
 * The sandbox is strict about where credentials go, so a client that would fail against Keap fails here too.
 */
export function tokenRoutes(oauth: SandboxOAuthServer): Router {
  const router = express.Router();
  const form = express.urlencoded({ extended: false, limit: '16kb' });

  router.post('/token', form, (req: Request, res: Response) => {
    // Token answers must never be cached by a proxy (RFC 6749 section 5.1).
    res.set('Cache-Control', 'no-store').set('Pragma', 'no-cache');
    const body = formBody(req);
    try {
      if (!req.is('application/x-www-form-urlencoded')) {
        throw new OAuthError(400, 'invalid_request', 'the body must be application/x-www-form-urlencoded');
      }
      switch (body.grant_type) {
        case 'authorization_code':
          res.json(oauth.exchangeCode({ clientId: body.client_id, clientSecret: body.client_secret, code: body.code, redirectUri: body.redirect_uri }));
          return;
        case 'refresh_token': {
          const basic = basicCredentials(req.get('authorization'));
          if (!basic) throw new OAuthError(401, 'invalid_client', 'client credentials must be sent as Authorization: Basic base64(client_id:client_secret)');
          res.json(oauth.refresh({ clientId: basic.id, clientSecret: basic.secret, refreshToken: body.refresh_token }));
          return;
        }
        case undefined:
          throw new OAuthError(400, 'invalid_request', 'grant_type is required');
        default:
          throw new OAuthError(400, 'unsupported_grant_type', `grant_type ${body.grant_type} is not supported`);
      }
    } catch (err) {
      if (!(err instanceof OAuthError)) throw err;
      if (err.status === 401) res.set('WWW-Authenticate', 'Basic realm="keap-sandbox"');
      res.status(err.status).json({ error: err.error, error_description: err.description });
    }
  });

  // Stands in for accounts.infusionsoft.com/app/oauth/authorize: the "user" approves at once.
  router.get('/app/oauth/authorize', (req: Request, res: Response) => {
    const q = req.query;
    const clientId = typeof q.client_id === 'string' ? q.client_id : undefined;
    const redirectUri = typeof q.redirect_uri === 'string' ? q.redirect_uri : undefined;
    if (clientId !== oauth.client.clientId || !redirectUri || q.response_type !== 'code') {
      res.status(400).type('text/plain').send('invalid authorization request: client_id, redirect_uri and response_type=code are required');
      return;
    }
    let target: URL;
    try {
      target = new URL(redirectUri);
    } catch {
      res.status(400).type('text/plain').send('redirect_uri is not a URL');
      return;
    }
    target.searchParams.set('code', oauth.issueAuthorizationCode(redirectUri));
    if (typeof q.state === 'string') target.searchParams.set('state', q.state);
    res.redirect(302, target.toString());
  });

  return router;
}

function formBody(req: Request): Record<string, string | undefined> {
  const raw: unknown = req.body;
  if (typeof raw !== 'object' || raw === null) return {};
  const out: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(raw)) if (typeof value === 'string') out[key] = value;
  return out;
}

function basicCredentials(header: string | undefined): { id: string; secret: string } | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header ?? '');
  if (!match?.[1]) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { id: decoded.slice(0, colon), secret: decoded.slice(colon + 1) };
}
