import express, { type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import { describeZodError, requireJsonObject } from './contact-changes.js';
import { SandboxHttpError } from './error-bodies.js';
import { HOOK_EVENT_KEYS, type SandboxHooks } from './hooks.js';
import type { SandboxHook } from './state.js';

/**
 * REST v1 hooks (`/crm/rest/v1/hooks/...`), shapes from keap-rest-v1.openapi.json: a RestHook is
 * `{key, eventKey, hookUrl, status}`; create, update, verify and delayedVerify answer 200 with one, delete 204.
 * The spec documents no 400 or 404 for several of these; the sandbox answers them anyway (in v1's error shape),
 * because a request naming no such hook or a bad URL must not look like a success.
 */
export function hookRoutes(hooks: SandboxHooks): Router {
  const router = express.Router();

  router.get('/event_keys', (_req, res) => {
    res.json([...HOOK_EVENT_KEYS]);
  });

  router.get('/', (_req, res) => {
    res.json(hooks.list().map(restHook));
  });

  router.post('/', async (req: Request, res: Response) => {
    const body = readBody(req, createSchema);
    res.json(restHook(await hooks.create(body.eventKey, body.hookUrl)));
  });

  router.get('/:key', (req: Request, res: Response) => {
    res.json(restHook(hooks.require(String(req.params.key))));
  });

  router.put('/:key', async (req: Request, res: Response) => {
    const key = String(req.params.key);
    hooks.require(key);
    const body = readBody(req, updateSchema);
    res.json(restHook(await hooks.update(key, body)));
  });

  router.delete('/:key', (req: Request, res: Response) => {
    hooks.remove(String(req.params.key));
    res.status(204).end();
  });

  router.post('/:key/verify', async (req: Request, res: Response) => {
    res.json(restHook(await hooks.verify(String(req.params.key))));
  });

  // The spec insists the secret comes back as a header, not in a body.
  router.post('/:key/delayedVerify', (req: Request, res: Response) => {
    res.json(restHook(hooks.delayedVerify(String(req.params.key), req.get('x-hook-secret'))));
  });

  return router;
}

const createSchema = z.object({
  eventKey: z.string({ error: 'required, one of GET /v1/hooks/event_keys' }),
  hookUrl: z.string({ error: 'required, the URL Keap posts events to' }),
});

const updateSchema = z
  .object({ eventKey: z.string().optional(), hookUrl: z.string().optional() })
  .refine((b) => b.eventKey !== undefined || b.hookUrl !== undefined, { message: 'give eventKey, hookUrl or both' });

function readBody<T>(req: Request, schema: z.ZodType<T>): T {
  const parsed = schema.safeParse(requireJsonObject(req.body));
  if (!parsed.success) throw new SandboxHttpError(400, describeZodError(parsed.error));
  return parsed.data;
}

/** Only the four properties the spec's RestHook has, whatever the record holds. */
function restHook(hook: SandboxHook): { key: string; eventKey: string; hookUrl: string; status: string } {
  return { key: hook.key, eventKey: hook.eventKey, hookUrl: hook.hookUrl, status: hook.status };
}
