import type { Router } from 'express';
import { z } from 'zod';
import type { OutboundWebhooks } from '../outbound-webhooks/service.js';
import type * as answers from './outbound-schemas.js';
import { parse, requireScope } from './request-checks.js';
import { idParam } from './schemas.js';

/** A list's query when it takes no parameter: one given is a 400 naming it. */
export const noQuery = z.strictObject({});
export const destinationListQuery = z.strictObject({
  connection_id: z.coerce.number().int().positive().optional().describe('The destinations of this connection.'),
});

type Answer<S extends z.ZodType> = z.input<S>;

/**
 * `/api/v1/outbound/...`: the outbound webhooks' connections, destinations and delivery log, for scripts. Everything
 * here needs the `admin` scope (a connection holds another system's credentials). The service validates the bodies
 * (a 400 names the field) and answers with views that hold no secret; a new signing secret is shown once, in the
 * answer that made it.
 */
export function outboundApiRoutes(router: Router, ctx: { readonly outboundWebhooks: OutboundWebhooks }): void {
  const admin = (res: Parameters<typeof requireScope>[0], what: string) => requireScope(res, 'admin', what);
  const id = (value: unknown) => parse(idParam, value, 'id');

  router.get('/api/v1/outbound/connections', (req, res) => {
    admin(res, 'reading outbound webhook connections');
    parse(noQuery, req.query, 'query');
    res.json({ connections: ctx.outboundWebhooks.listConnections() } satisfies Answer<typeof answers.connectionListResponse>);
  });
  router.post('/api/v1/outbound/connections', (req, res) => {
    admin(res, 'creating an outbound webhook connection');
    res.json(ctx.outboundWebhooks.createConnection(req.body) satisfies Answer<typeof answers.connectionWithSecretResponse>);
  });
  router.get('/api/v1/outbound/connections/:id', (req, res) => {
    admin(res, 'reading an outbound webhook connection');
    res.json({ connection: ctx.outboundWebhooks.getConnection(id(req.params.id)) } satisfies Answer<typeof answers.connectionResponse>);
  });
  router.patch('/api/v1/outbound/connections/:id', (req, res) => {
    admin(res, 'changing an outbound webhook connection');
    res.json({ connection: ctx.outboundWebhooks.updateConnection(id(req.params.id), req.body) } satisfies Answer<typeof answers.connectionResponse>);
  });
  router.delete('/api/v1/outbound/connections/:id', (req, res) => {
    admin(res, 'deleting an outbound webhook connection');
    ctx.outboundWebhooks.deleteConnection(id(req.params.id));
    res.json({ ok: true });
  });
  router.post('/api/v1/outbound/connections/:id/rotate-secret', (req, res) => {
    admin(res, 'rotating a signing secret');
    res.json(ctx.outboundWebhooks.rotateSigningSecret(id(req.params.id), req.body) satisfies Answer<typeof answers.connectionWithSecretResponse>);
  });

  router.get('/api/v1/outbound/destinations', (req, res) => {
    admin(res, 'reading outbound webhook destinations');
    const q = parse(destinationListQuery, req.query, 'query');
    res.json({ destinations: ctx.outboundWebhooks.listDestinations(q.connection_id) } satisfies Answer<typeof answers.destinationListResponse>);
  });
  router.post('/api/v1/outbound/destinations', (req, res) => {
    admin(res, 'creating an outbound webhook destination');
    res.json({ destination: ctx.outboundWebhooks.createDestination(req.body) } satisfies Answer<typeof answers.destinationResponse>);
  });
  router.get('/api/v1/outbound/destinations/:id', (req, res) => {
    admin(res, 'reading an outbound webhook destination');
    res.json({ destination: ctx.outboundWebhooks.getDestination(id(req.params.id)) } satisfies Answer<typeof answers.destinationResponse>);
  });
  router.patch('/api/v1/outbound/destinations/:id', (req, res) => {
    admin(res, 'changing an outbound webhook destination');
    res.json({ destination: ctx.outboundWebhooks.updateDestination(id(req.params.id), req.body) } satisfies Answer<typeof answers.destinationResponse>);
  });
  router.delete('/api/v1/outbound/destinations/:id', (req, res) => {
    admin(res, 'deleting an outbound webhook destination');
    ctx.outboundWebhooks.deleteDestination(id(req.params.id));
    res.json({ ok: true });
  });
  router.post('/api/v1/outbound/destinations/:id/test', async (req, res) => {
    admin(res, 'sending a test to an outbound webhook destination');
    res.json({ test: await ctx.outboundWebhooks.sendTest(id(req.params.id), req.body) } satisfies Answer<typeof answers.testSendResponse>);
  });
  router.post('/api/v1/outbound/destinations/:id/replay-failed', (req, res) => {
    admin(res, 'replaying outbound deliveries');
    res.json(ctx.outboundWebhooks.replayFailed(id(req.params.id), req.body) satisfies Answer<typeof answers.replayFailedResponse>);
  });

  router.get('/api/v1/outbound/deliveries', (req, res) => {
    admin(res, 'reading the outbound delivery log');
    res.json(ctx.outboundWebhooks.listDeliveries(req.query) satisfies Answer<typeof answers.deliveryListResponse>);
  });
  router.get('/api/v1/outbound/deliveries/:id', (req, res) => {
    admin(res, 'reading an outbound delivery');
    res.json({ delivery: ctx.outboundWebhooks.getDelivery(id(req.params.id)) } satisfies Answer<typeof answers.deliveryDetailResponse>);
  });
  router.post('/api/v1/outbound/deliveries/:id/replay', (req, res) => {
    admin(res, 'replaying an outbound delivery');
    res.json({ delivery: ctx.outboundWebhooks.replay(id(req.params.id)) } satisfies Answer<typeof answers.deliveryResponse>);
  });
}
