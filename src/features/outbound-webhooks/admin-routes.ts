import { pagerFor } from '../../web/pager.js';
import { Router, type Request, type Response } from 'express';
import { AppError } from '../../core/errors.js';
import { formFields, formText } from '../../core/forms.js';
import type { Logger } from '../../core/logger.js';
import type { CorePluginAdmin } from '../../plugins/types.js';
import { formatTime, formatTimeWithSeconds } from '../../web/format.js';
import type { HeldTag, Role } from '../members/types.js';
import { OAUTH_GRANTS, type OAuthGrant } from './auth.js';
import { MEMBER_EVENT_TYPES } from './events.js';
import type { ConnectionView, DeliveryView, DestinationView, OutboundWebhooks, TestSendView } from './service.js';
import { DELIVERY_STATUSES, DESTINATION_METHODS } from './types.js';
import { checkTemplate, DEFAULT_TEMPLATE, renderTemplate, sampleEvent } from './template.js';

/**
 * Settings → Outbound webhooks: connections (where and how to reach another system, the signing secret shown once),
 * their destinations (what is sent for which events, with a template preview and a test send), and each
 * destination's delivery log (every attempt, replay one, replay the failed ones of a time range). Everything goes
 * through the service, as the JSON API does; a service error naming a field is shown beside that field.
 */

export const OUTBOUND_PATH = '/admin/settings/outbound-webhooks';
export const DELIVERY_LOG_PAGE_SIZE = 50;
const MAX_PAGE = 100_000;
const MAX_OVERLAP_HOURS = 24 * 30;

export interface OutboundAdminContext {
  admin: CorePluginAdmin;
  service: OutboundWebhooks;
  /** The roles and the tags members hold, for a destination's filters. */
  members: { roles(): Role[]; heldTags(): HeldTag[] };
  logger: Logger;
  clock: { now(): number };
}

const AUTH_LABELS = { none: 'None', basic: 'Basic (user name and password)', bearer: 'Bearer token', oauth2: 'OAuth 2.0' } as const;
const GRANT_LABELS: Record<OAuthGrant, string> = {
  client_credentials: 'Client credentials',
  password: 'Resource owner password',
  jwt_bearer: 'JWT bearer (RFC 7523)',
};
/** How the page names the secrets a connection has stored (never their values). */
const SECRET_LABELS: Record<string, string> = { password: 'password', token: 'token', clientSecret: 'client secret', assertion: 'JSON Web Token' };
const EVENT_LABELS: Record<(typeof MEMBER_EVENT_TYPES)[number], string> = {
  'member.created': 'member created',
  'member.updated': 'member updated',
  'member.tags_changed': 'tags changed',
  'member.role_changed': 'role changed',
  'member.deleted': 'member deleted',
  'member.logged_in': 'logged in',
  'member.password_changed': 'password changed',
};
/** The patterns offered as checkboxes; anything else a destination lists goes in the free field. */
const CHECKBOX_EVENTS: readonly string[] = [...MEMBER_EVENT_TYPES, 'member.*', 'keap.*'];
const CONTENT_TYPES = ['application/json', 'application/x-www-form-urlencoded', 'text/plain'];

const NOTICES = {
  saved: 'Saved.',
  deleted: 'The connection was deleted, with its destinations and their delivery logs.',
  destination_deleted: 'The destination was deleted, with its delivery log.',
  enabled: 'The destination is enabled: it takes events again, and deliveries that were queued are sent now.',
  disabled: 'The destination is disabled: it takes no new events, and the deliveries already queued wait until it is enabled again.',
  replayed: 'The delivery is queued again, with the same event id and body.',
} as const;
/** A queued delivery of a disabled destination is not sent at its time: it waits for Enable. */
const WAITS_FOR_ENABLE = 'when the destination is enabled again (it is disabled)';

/** The connection form's fields as posted, kept to show the form again (never a secret: those are left empty). */
interface ConnectionForm {
  name: string;
  description: string;
  base_url: string;
  port: string;
  auth_type: string;
  basic_username: string;
  oauth_grant: string;
  oauth_token_url: string;
  oauth_client_id: string;
  oauth_scope: string;
  oauth_username: string;
}

/** The destination form's fields as posted. */
interface DestinationForm {
  name: string;
  description: string;
  method: string;
  content_type: string;
  path: string;
  template: string;
  events: string[];
  other_events: string;
  filter_tag_id: string;
  filter_role: string;
  enabled: boolean;
}

export function outboundAdminRoutes(ctx: OutboundAdminContext): Router {
  const router = Router();
  const service = ctx.service;
  const adminId = (res: Response) => (res.locals.admin as { id?: number } | undefined)?.id;

  // Connections -------------------------------------------------------------------------------------------------

  router.get('/', (req, res) => {
    const destinations = service.listDestinations();
    const connections = service.listConnections().map((c) => {
      const own = destinations.filter((d) => d.connection_id === c.id);
      return {
        ...c,
        authLabel: authSummary(c),
        destinations: own.length,
        disabled: own.filter((d) => !d.enabled).length,
        failing: own.filter((d) => d.enabled && d.failing_since !== null).length,
      };
    });
    ctx.admin.view(res, 200, 'outbound/connections', { title: 'Outbound webhooks', connections, notice: noticeOf(req) });
  });

  const renderConnectionForm = (res: Response, status: number, data: { connection?: ConnectionView; form: ConnectionForm; errors?: Record<string, string>; error?: string; secretsTyped?: boolean }) => {
    const type = data.form.auth_type || 'none';
    const secretsSet = new Set(data.connection?.auth.secrets_set ?? []);
    const sameType = data.connection?.auth.type === type;
    const secretState = (field: string) => (sameType && secretsSet.has(field) ? 'set' : undefined);
    ctx.admin.view(res, status, 'outbound/connection-form', {
      title: data.connection ? `Edit ${data.connection.name}` : 'New connection',
      connection: data.connection,
      action: data.connection ? `${OUTBOUND_PATH}/${data.connection.id}/edit` : `${OUTBOUND_PATH}/new`,
      form: data.form,
      authTypes: (Object.keys(AUTH_LABELS) as Array<keyof typeof AUTH_LABELS>).map((value) => ({ value, label: AUTH_LABELS[value], checked: value === type })),
      grants: OAUTH_GRANTS.map((value) => ({ value, label: GRANT_LABELS[value], selected: value === (data.form.oauth_grant || 'client_credentials') })),
      secrets: {
        basicPassword: type === 'basic' ? secretState('password') : undefined,
        bearerToken: secretState('token'),
        clientSecret: secretState('clientSecret'),
        oauthPassword: type === 'oauth2' ? secretState('password') : undefined,
        assertion: secretState('assertion'),
      },
      errors: data.errors ?? {},
      invalid: Boolean(data.errors && Object.keys(data.errors).length) || Boolean(data.error),
      error: data.error,
      secretsTyped: data.secretsTyped,
    });
  };

  router.get('/new', (_req, res) => renderConnectionForm(res, 200, { form: emptyConnectionForm() }));

  router.post('/new', (req, res) => {
    const form = connectionFormOf(req);
    let created: ReturnType<OutboundWebhooks['createConnection']>;
    try {
      created = service.createConnection({ ...connectionBasics(form), auth: authInputOf(req, form, false) });
    } catch (err) {
      return renderConnectionForm(res, statusOf(err), { form, secretsTyped: secretsTyped(req), ...formErrors(err, connectionField(form)) });
    }
    ctx.logger.info({ adminId: adminId(res), connectionId: created.connection.id }, 'outbound connection created');
    // Shown once, on this answer only: it is not in a URL, and no later page can show it again.
    renderConnection(res, 201, created.connection.id, { signingSecret: created.signing_secret, notice: 'The connection is created. Copy its signing secret now: it is shown only once.' });
  });

  const renderConnection = (res: Response, status: number, id: number, extra: Record<string, unknown> = {}) => {
    const connection = service.getConnection(id);
    const destinations = service.listDestinations(id).map(destinationRow);
    ctx.admin.view(res, status, 'outbound/connection', {
      title: connection.name,
      connection: {
        ...connection,
        authLabel: authSummary(connection),
        secretsText: connection.auth.secrets_set.map((name) => SECRET_LABELS[name] ?? name).join(', '),
        previousUntil: connection.previous_secret_until && formatTime(connection.previous_secret_until),
        tokenError: connection.token_error && { message: connection.token_error.message, at: formatTime(connection.token_error.at) },
        created: formatTime(connection.created_at),
      },
      destinations,
      maxOverlapHours: MAX_OVERLAP_HOURS,
      ...extra,
    });
  };

  router.get('/:connectionId', (req, res) => {
    const id = connectionIdOf(req, res);
    if (id === undefined) return;
    renderConnection(res, 200, id, { notice: noticeOf(req) });
  });

  router.get('/:connectionId/edit', (req, res) => {
    const id = connectionIdOf(req, res);
    if (id === undefined) return;
    const connection = service.getConnection(id);
    renderConnectionForm(res, 200, { connection, form: connectionFormFrom(connection) });
  });

  router.post('/:connectionId/edit', (req, res) => {
    const id = connectionIdOf(req, res);
    if (id === undefined) return;
    const connection = service.getConnection(id);
    const form = connectionFormOf(req);
    try {
      service.updateConnection(id, { ...connectionBasics(form), auth: authInputOf(req, form, true) });
    } catch (err) {
      return renderConnectionForm(res, statusOf(err), { connection, form, secretsTyped: secretsTyped(req), ...formErrors(err, connectionField(form)) });
    }
    ctx.logger.info({ adminId: adminId(res), connectionId: id }, 'outbound connection changed');
    res.redirect(303, `${OUTBOUND_PATH}/${id}?done=saved`);
  });

  router.post('/:connectionId/rotate', (req, res) => {
    const id = connectionIdOf(req, res);
    if (id === undefined) return;
    const body = formFields(req);
    const hours = formText(body.overlap_hours).trim();
    if (!/^\d{1,3}$/.test(hours) || Number(hours) > MAX_OVERLAP_HOURS) {
      return renderConnection(res, 400, id, { rotateError: `Keep the old secret signing for: a whole number of hours from 0 to ${MAX_OVERLAP_HOURS}. Nothing was changed.`, rotateOpen: true });
    }
    if (formText(body.confirm) !== 'yes') return renderConnection(res, 400, id, { rotateError: 'Tick the box to confirm: receivers must be given the new secret. Nothing was changed.', rotateOpen: true });
    const rotated = service.rotateSigningSecret(id, { overlap_hours: Number(hours) });
    ctx.logger.warn({ adminId: adminId(res), connectionId: id, overlapHours: Number(hours) }, 'outbound connection signing secret rotated');
    const notice = Number(hours) > 0
      ? `A new signing secret. Deliveries carry both signatures until ${formatTime(rotated.connection.previous_secret_until ?? '')}: give the receivers the new one before then. It is shown only once.`
      : 'A new signing secret, used from now on (the old one signs nothing more). It is shown only once.';
    renderConnection(res, 200, id, { signingSecret: rotated.signing_secret, notice });
  });

  router.get('/:connectionId/delete', (req, res) => {
    const id = connectionIdOf(req, res);
    if (id === undefined) return;
    renderConnection(res, 200, id, { confirmDelete: true });
  });

  router.post('/:connectionId/delete', (req, res) => {
    const id = connectionIdOf(req, res);
    if (id === undefined) return;
    if (formText(formFields(req).confirm) !== 'yes') return renderConnection(res, 400, id, { confirmDelete: true, deleteError: 'Tick the box to confirm. Nothing was deleted.' });
    service.deleteConnection(id);
    ctx.logger.warn({ adminId: adminId(res), connectionId: id }, 'outbound connection deleted');
    res.redirect(303, `${OUTBOUND_PATH}?done=deleted`);
  });

  // Destinations ------------------------------------------------------------------------------------------------

  const renderDestinationForm = (
    res: Response,
    status: number,
    data: { connection: ConnectionView; destination?: DestinationView; form: DestinationForm; errors?: Record<string, string>; error?: string; preview?: { type: string; body?: string; error?: string }; test?: TestSendView; testError?: string; testType?: string; notice?: string | undefined },
  ) => {
    const { connection, destination, form } = data;
    const chosen = new Set(form.events);
    const roles = ctx.members.roles();
    const tags = ctx.members.heldTags();
    const previewType = data.preview?.type ?? data.testType ?? firstConcreteType(form.events);
    const selectedTag = form.filter_tag_id;
    ctx.admin.view(res, status, 'outbound/destination', {
      title: destination ? destination.name : `New destination for ${connection.name}`,
      connection,
      destination: destination && { ...destination, disabledAt: destination.disabled_at && formatTime(destination.disabled_at), failingSince: destination.failing_since && formatTime(destination.failing_since) },
      base: destination ? `${OUTBOUND_PATH}/${connection.id}/destinations/${destination.id}` : `${OUTBOUND_PATH}/${connection.id}/destinations/new`,
      form,
      methods: DESTINATION_METHODS.map((value) => ({ value, selected: value === form.method })),
      contentTypes: CONTENT_TYPES,
      eventChoices: CHECKBOX_EVENTS.map((value) => ({
        value,
        label: value in EVENT_LABELS ? EVENT_LABELS[value as keyof typeof EVENT_LABELS] : value === 'member.*' ? 'every member event' : 'every Keap event',
        checked: chosen.has(value),
      })),
      roles: roles.map((r) => ({ slug: r.slug, name: r.name, selected: r.slug === form.filter_role })),
      tags: tags.map((t) => ({ id: t.id, name: t.name, selected: String(t.id) === selectedTag })),
      // A tag chosen before no member held it any more still shows (as its id).
      unknownTag: selectedTag && !tags.some((t) => String(t.id) === selectedTag) ? selectedTag : undefined,
      sampleTypes: sampleTypesFor(form.events).map((type) => ({ type, selected: type === previewType })),
      defaultTemplate: DEFAULT_TEMPLATE,
      preview: data.preview,
      test: data.test && testView(data.test),
      testError: data.testError,
      errors: data.errors ?? {},
      invalid: Boolean(data.errors && Object.keys(data.errors).length) || Boolean(data.error),
      error: data.error,
      notice: data.notice,
    });
  };

  router.get('/:connectionId/destinations/new', (req, res) => {
    const id = connectionIdOf(req, res);
    if (id === undefined) return;
    renderDestinationForm(res, 200, { connection: service.getConnection(id), form: emptyDestinationForm() });
  });

  router.post('/:connectionId/destinations/new', (req, res) => {
    const id = connectionIdOf(req, res);
    if (id === undefined) return;
    const connection = service.getConnection(id);
    const form = destinationFormOf(req);
    if (formText(formFields(req).intent) === 'preview') {
      return renderDestinationForm(res, 200, { connection, form, preview: previewOf(req, form) });
    }
    let created: DestinationView;
    try {
      created = service.createDestination({ connection_id: id, ...destinationInputOf(form) });
    } catch (err) {
      return renderDestinationForm(res, statusOf(err), { connection, form, ...formErrors(err, destinationField) });
    }
    ctx.logger.info({ adminId: adminId(res), destinationId: created.id }, 'outbound destination created');
    res.redirect(303, `${OUTBOUND_PATH}/${id}/destinations/${created.id}?done=saved`);
  });

  const destinationOf = (req: Request, res: Response): { connection: ConnectionView; destination: DestinationView } | undefined => {
    const connectionId = connectionIdOf(req, res);
    if (connectionId === undefined) return undefined;
    const id = idParam(req.params.destinationId);
    const destination = id === undefined ? undefined : service.listDestinations(connectionId).find((d) => d.id === id);
    if (!destination) {
      missing(res, 'There is no such destination on this connection: it may have been deleted.');
      return undefined;
    }
    return { connection: service.getConnection(connectionId), destination };
  };

  router.get('/:connectionId/destinations/:destinationId', (req, res) => {
    const found = destinationOf(req, res);
    if (!found) return;
    renderDestinationForm(res, 200, { ...found, form: destinationFormFrom(found.destination), notice: noticeOf(req) });
  });

  router.post('/:connectionId/destinations/:destinationId', (req, res) => {
    const found = destinationOf(req, res);
    if (!found) return;
    const form = destinationFormOf(req);
    if (formText(formFields(req).intent) === 'preview') {
      return renderDestinationForm(res, 200, { ...found, form, preview: previewOf(req, form) });
    }
    try {
      // Enabled or not is the Enable/Disable button's: a save never turns back on what memberhook turned off meanwhile.
      const { enabled: _enabled, ...changes } = destinationInputOf(form);
      service.updateDestination(found.destination.id, changes);
    } catch (err) {
      return renderDestinationForm(res, statusOf(err), { ...found, form, ...formErrors(err, destinationField) });
    }
    ctx.logger.info({ adminId: adminId(res), destinationId: found.destination.id }, 'outbound destination changed');
    res.redirect(303, `${OUTBOUND_PATH}/${found.connection.id}/destinations/${found.destination.id}?done=saved`);
  });

  router.post('/:connectionId/destinations/:destinationId/test', async (req, res) => {
    const found = destinationOf(req, res);
    if (!found) return;
    const type = formText(formFields(req).event_type).trim();
    const form = destinationFormFrom(found.destination);
    try {
      const test = await service.sendTest(found.destination.id, type ? { event_type: type } : {});
      ctx.logger.info({ adminId: adminId(res), destinationId: found.destination.id, status: test.response?.status ?? null }, 'outbound destination test sent');
      renderDestinationForm(res, 200, { ...found, form, test, testType: test.event.type });
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      renderDestinationForm(res, err.status, { ...found, form, testError: `The test was not sent: ${err.publicMessage}`, testType: type });
    }
  });

  router.post('/:connectionId/destinations/:destinationId/enabled', (req, res) => {
    const found = destinationOf(req, res);
    if (!found) return;
    const enable = formText(formFields(req).enabled) === 'yes';
    service.updateDestination(found.destination.id, { enabled: enable });
    ctx.logger.info({ adminId: adminId(res), destinationId: found.destination.id, enabled: enable }, 'outbound destination enabled or disabled');
    res.redirect(303, `${OUTBOUND_PATH}/${found.connection.id}/destinations/${found.destination.id}?done=${enable ? 'enabled' : 'disabled'}`);
  });

  router.post('/:connectionId/destinations/:destinationId/delete', (req, res) => {
    const found = destinationOf(req, res);
    if (!found) return;
    if (formText(formFields(req).confirm) !== 'yes') {
      return renderDestinationForm(res, 400, { ...found, form: destinationFormFrom(found.destination), error: 'Tick the box to confirm the deletion. Nothing was deleted.' });
    }
    service.deleteDestination(found.destination.id);
    ctx.logger.warn({ adminId: adminId(res), destinationId: found.destination.id }, 'outbound destination deleted');
    res.redirect(303, `${OUTBOUND_PATH}/${found.connection.id}?done=destination_deleted`);
  });

  // The delivery log ---------------------------------------------------------------------------------------------

  const renderLog = (req: Request, res: Response, found: { connection: ConnectionView; destination: DestinationView }, status: number, extra: Record<string, unknown> = {}) => {
    const { query, errors } = logQueryOf(req);
    const base = `${OUTBOUND_PATH}/${found.connection.id}/destinations/${found.destination.id}`;
    const now = ctx.clock.now();
    const common = {
      title: `Delivery log: ${found.destination.name}`,
      connection: found.connection,
      destination: found.destination,
      base,
      query,
      statuses: DELIVERY_STATUSES.map((value) => ({ value, selected: value === query.status })),
      replayFrom: formText(extra.replayFrom) || toLocalInput(new Date(now - 24 * 3_600_000).toISOString()),
      replayTo: formText(extra.replayTo) || toLocalInput(new Date(now + 60_000).toISOString()),
      notice: noticeOf(req),
      ...extra,
    };
    if (errors.length) return ctx.admin.view(res, 400, 'outbound/log', { ...common, filterErrors: errors });
    const { deliveries, total } = service.listDeliveries(
      {
        destination_id: found.destination.id,
        ...(query.status ? { status: query.status } : {}),
        ...(query.event_type ? { event_type: query.event_type } : {}),
        ...(query.from ? { from: fromLocalInput(query.from) } : {}),
        ...(query.to ? { to: fromLocalInput(query.to) } : {}),
        page: query.page,
        per_page: DELIVERY_LOG_PAGE_SIZE,
      },
    );
    const pageUrl = (page: number) => `${base}/log?${new URLSearchParams({ ...pickSet(query), ...(page > 1 ? { page: String(page) } : {}) }).toString()}`.replace(/\?$/, '');
    ctx.admin.view(res, status, 'outbound/log', {
      ...common,
      deliveries: deliveries.map((d) => deliveryRow(d, base)),
      total,
      filtered: Boolean(query.status || query.event_type || query.from || query.to),
      pager: pagerFor(query.page, DELIVERY_LOG_PAGE_SIZE, total, deliveries.length, pageUrl),
    });
  };

  router.get('/:connectionId/destinations/:destinationId/log', (req, res) => {
    const found = destinationOf(req, res);
    if (!found) return;
    renderLog(req, res, found, 200);
  });

  router.post('/:connectionId/destinations/:destinationId/replay-failed', (req, res) => {
    const found = destinationOf(req, res);
    if (!found) return;
    const body = formFields(req);
    const from = formText(body.from).trim();
    const to = formText(body.to).trim();
    const keep = { replayFrom: from, replayTo: to, replayOpen: true };
    if (!LOCAL_TIME.test(from) || !LOCAL_TIME.test(to)) return renderLog(req, res, found, 400, { ...keep, replayError: 'From and To: a date and time each (UTC). Nothing was replayed.' });
    if (formText(body.confirm) !== 'yes') return renderLog(req, res, found, 400, { ...keep, replayError: 'Tick the box to confirm. Nothing was replayed.' });
    let replayed: number;
    try {
      replayed = service.replayFailed(found.destination.id, { from: fromLocalInput(from), to: fromLocalInput(to) }).replayed;
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      return renderLog(req, res, found, err.status, { ...keep, replayError: `${humanField(err.publicMessage)} Nothing was replayed.` });
    }
    ctx.logger.info({ adminId: adminId(res), destinationId: found.destination.id, replayed }, 'outbound failed deliveries replayed');
    const notice = replayed === 0 ? 'No failed or dead delivery in that time range: nothing was replayed.' : `${replayed} failed or dead deliver${replayed === 1 ? 'y is' : 'ies are'} queued again.`;
    renderLog(req, res, found, 200, { notice });
  });

  const deliveryOf = (req: Request, res: Response) => {
    const found = destinationOf(req, res);
    if (!found) return undefined;
    const id = idParam(req.params.deliveryId);
    let delivery: ReturnType<OutboundWebhooks['getDelivery']> | undefined;
    if (id !== undefined) {
      try {
        delivery = service.getDelivery(id);
      } catch (err) {
        if (!(err instanceof AppError) || err.status !== 404) throw err;
      }
    }
    if (!delivery || delivery.destination_id !== found.destination.id) {
      missing(res, 'There is no such delivery in this destination\'s log: it may have been deleted (finished deliveries are kept for 30 days).');
      return undefined;
    }
    return { ...found, delivery };
  };

  const renderDelivery = (res: Response, status: number, found: NonNullable<ReturnType<typeof deliveryOf>>, extra: Record<string, unknown> = {}) => {
    const { connection, destination, delivery } = found;
    const base = `${OUTBOUND_PATH}/${connection.id}/destinations/${destination.id}`;
    ctx.admin.view(res, status, 'outbound/delivery', {
      title: `Delivery #${delivery.id}`,
      connection,
      destination,
      base,
      delivery: {
        ...deliveryRow(delivery, base),
        ...(delivery.status === 'queued' && !destination.enabled ? { nextAttempt: WAITS_FOR_ENABLE } : {}),
        body: delivery.body,
        replayable: delivery.status === 'delivered' || delivery.status === 'failed' || delivery.status === 'dead',
      },
      attempts: [...delivery.attempts_log].reverse().map((a) => ({
        ...a,
        atText: formatTimeWithSeconds(a.at),
        requestHeaders: headerLines(a.request.headers),
        responseHeaders: a.response ? headerLines(a.response.headers) : undefined,
        badge: a.response ? statusBadge(a.response.status) : 'bad',
      })),
      ...extra,
    });
  };

  router.get('/:connectionId/destinations/:destinationId/deliveries/:deliveryId', (req, res) => {
    const found = deliveryOf(req, res);
    if (!found) return;
    const notice = noticeOf(req);
    renderDelivery(res, 200, found, {
      notice: notice === NOTICES.replayed && !found.destination.enabled ? `${notice} It is sent ${WAITS_FOR_ENABLE}: Enable it on the destination's page.` : notice,
    });
  });

  router.post('/:connectionId/destinations/:destinationId/deliveries/:deliveryId/replay', (req, res) => {
    const found = deliveryOf(req, res);
    if (!found) return;
    try {
      service.replay(found.delivery.id);
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      return renderDelivery(res, err.status, found, { error: `It was not replayed: ${err.publicMessage}.` });
    }
    ctx.logger.info({ adminId: adminId(res), deliveryId: found.delivery.id }, 'outbound delivery replayed');
    res.redirect(303, `${OUTBOUND_PATH}/${found.connection.id}/destinations/${found.destination.id}/deliveries/${found.delivery.id}?done=replayed`);
  });

  // Helpers that need the context ---------------------------------------------------------------------------------

  function connectionIdOf(req: Request, res: Response): number | undefined {
    const id = idParam(req.params.connectionId);
    if (id !== undefined) {
      try {
        service.connectionRow(id);
        return id;
      } catch (err) {
        if (!(err instanceof AppError) || err.status !== 404) throw err;
      }
    }
    missing(res, 'There is no such connection: it may have been deleted.');
    return undefined;
  }

  function missing(res: Response, message: string): void {
    ctx.admin.view(res, 404, 'outbound/missing', { title: 'Not found', message });
  }

  function previewOf(req: Request, form: DestinationForm): { type: string; body?: string; error?: string } {
    const asked = formText(formFields(req).preview_event).trim();
    const type = /^[\w.*-]{1,200}$/.test(asked) ? asked : firstConcreteType(form.events);
    const source = form.template.trim() ? form.template : DEFAULT_TEMPLATE;
    const problem = checkTemplate(source);
    if (problem) return { type, error: problem };
    try {
      return { type, body: renderTemplate(source, sampleEvent(type)) };
    } catch (err) {
      return { type, error: err instanceof Error ? err.message.split('\n')[0] : String(err) };
    }
  }

  return router;
}

// Forms ------------------------------------------------------------------------------------------------------------

function emptyConnectionForm(): ConnectionForm {
  return { name: '', description: '', base_url: '', port: '', auth_type: 'none', basic_username: '', oauth_grant: 'client_credentials', oauth_token_url: '', oauth_client_id: '', oauth_scope: '', oauth_username: '' };
}

function connectionFormOf(req: Request): ConnectionForm {
  const body = formFields(req);
  const text = (name: keyof ConnectionForm) => formText(body[name]);
  return {
    name: text('name'),
    description: text('description'),
    base_url: text('base_url').trim(),
    port: text('port').trim(),
    auth_type: text('auth_type'),
    basic_username: text('basic_username'),
    oauth_grant: text('oauth_grant'),
    oauth_token_url: text('oauth_token_url').trim(),
    oauth_client_id: text('oauth_client_id'),
    oauth_scope: text('oauth_scope'),
    oauth_username: text('oauth_username'),
  };
}

function connectionFormFrom(c: ConnectionView): ConnectionForm {
  const auth = c.auth as Record<string, unknown>;
  const text = (key: string) => (typeof auth[key] === 'string' ? (auth[key] as string) : '');
  return {
    name: c.name,
    description: c.description,
    base_url: c.base_url,
    port: c.port === null ? '' : String(c.port),
    auth_type: c.auth.type,
    basic_username: c.auth.type === 'basic' ? text('username') : '',
    oauth_grant: text('grant') || 'client_credentials',
    oauth_token_url: text('tokenUrl'),
    oauth_client_id: text('clientId'),
    oauth_scope: text('scope'),
    oauth_username: c.auth.type === 'oauth2' ? text('username') : '',
  };
}

/** The fields besides authentication, as the service takes them. A port that is not a number goes through as text, for the service to name. */
function connectionBasics(form: ConnectionForm) {
  const port = form.port === '' ? null : /^\d{1,5}$/.test(form.port) ? Number(form.port) : form.port;
  return { name: form.name, description: form.description, base_url: form.base_url, port };
}

/**
 * The authentication as the service takes it. A secret field left empty is left out: on an edit the service keeps
 * the stored one (when the type stays the same); on a create it is missing, and the service says so.
 */
function authInputOf(req: Request, form: ConnectionForm, editing: boolean): Record<string, unknown> {
  const body = formFields(req);
  const secret = (name: string) => {
    const value = formText(body[name]);
    return value.trim() === '' ? {} : { [fieldFor(name)]: value };
  };
  void editing;
  switch (form.auth_type) {
    case 'basic':
      return { type: 'basic', username: form.basic_username, ...secret('basic_password') };
    case 'bearer':
      return { type: 'bearer', ...secret('bearer_token') };
    case 'oauth2': {
      const grant = form.oauth_grant;
      return {
        type: 'oauth2',
        grant,
        tokenUrl: form.oauth_token_url,
        clientId: form.oauth_client_id,
        ...secret('oauth_client_secret'),
        ...(form.oauth_scope.trim() ? { scope: form.oauth_scope } : {}),
        ...(grant === 'password' ? { username: form.oauth_username, ...secret('oauth_password') } : {}),
        ...(grant === 'jwt_bearer' ? secret('oauth_assertion') : {}),
      };
    }
    default:
      return { type: form.auth_type || 'none' };
  }
}

/** A form field's name in the service's auth object. */
function fieldFor(formName: string): string {
  return { basic_password: 'password', bearer_token: 'token', oauth_client_secret: 'clientSecret', oauth_password: 'password', oauth_assertion: 'assertion' }[formName] ?? formName;
}

/** The service's field (`auth.clientSecret`) as the form's input name (`oauth_client_secret`). */
function connectionField(form: ConnectionForm): (field: string) => string {
  return (field) => {
    if (!field.startsWith('auth')) return field;
    const key = field.slice('auth.'.length);
    if (form.auth_type === 'basic') return key === 'username' ? 'basic_username' : key === 'password' ? 'basic_password' : 'auth_type';
    if (form.auth_type === 'bearer') return key === 'token' ? 'bearer_token' : 'auth_type';
    if (form.auth_type === 'oauth2') {
      const names: Record<string, string> = { grant: 'oauth_grant', tokenUrl: 'oauth_token_url', clientId: 'oauth_client_id', clientSecret: 'oauth_client_secret', scope: 'oauth_scope', username: 'oauth_username', password: 'oauth_password', assertion: 'oauth_assertion' };
      return names[key] ?? 'auth_type';
    }
    return 'auth_type';
  };
}

function emptyDestinationForm(): DestinationForm {
  return { name: '', description: '', method: 'POST', content_type: 'application/json', path: '', template: DEFAULT_TEMPLATE, events: ['member.*'], other_events: '', filter_tag_id: '', filter_role: '', enabled: true };
}

function destinationFormOf(req: Request): DestinationForm {
  const body = formFields(req);
  const checked = ([] as unknown[]).concat(body.events ?? []).filter((v): v is string => typeof v === 'string');
  return {
    name: formText(body.name),
    description: formText(body.description),
    method: formText(body.method),
    content_type: formText(body.content_type).trim(),
    path: formText(body.path).trim(),
    // Browsers send textarea line ends as CRLF; templates are kept with LF.
    template: formText(body.template).replace(/\r\n/g, '\n'),
    events: checked.filter((v) => CHECKBOX_EVENTS.includes(v)),
    other_events: formText(body.other_events),
    filter_tag_id: formText(body.filter_tag_id).trim(),
    filter_role: formText(body.filter_role).trim(),
    enabled: formText(body.enabled) === 'yes',
  };
}

function destinationFormFrom(d: DestinationView): DestinationForm {
  return {
    name: d.name,
    description: d.description,
    method: d.method,
    content_type: d.content_type,
    path: d.path,
    template: d.template ?? DEFAULT_TEMPLATE,
    events: d.events.filter((e) => CHECKBOX_EVENTS.includes(e)),
    other_events: d.events.filter((e) => !CHECKBOX_EVENTS.includes(e)).join(', '),
    filter_tag_id: d.filter_tag_id === null ? '' : String(d.filter_tag_id),
    filter_role: d.filter_role ?? '',
    enabled: d.enabled,
  };
}

/** Every event pattern the form lists: the boxes, then the free field's (split on commas and spaces). */
function allEvents(form: DestinationForm): string[] {
  const others = form.other_events.split(/[\s,]+/).map((e) => e.trim()).filter(Boolean);
  return [...new Set([...form.events, ...others])];
}

function destinationInputOf(form: DestinationForm) {
  const template = form.template.trim() === '' || form.template.trim() === DEFAULT_TEMPLATE.trim() ? null : form.template;
  const tag = form.filter_tag_id === '' ? null : /^\d{1,15}$/.test(form.filter_tag_id) ? Number(form.filter_tag_id) : form.filter_tag_id;
  return {
    name: form.name,
    description: form.description,
    method: form.method,
    content_type: form.content_type,
    path: form.path,
    template,
    events: allEvents(form),
    filter_tag_id: tag,
    filter_role: form.filter_role === '' ? null : form.filter_role,
    enabled: form.enabled,
  };
}

function destinationField(field: string): string {
  if (field.startsWith('events')) return 'events';
  return field;
}

/** A service error as the form shows it: beside its field, or above the form. */
function formErrors(err: unknown, fieldOf: (field: string) => string): { errors?: Record<string, string>; error?: string } {
  if (!(err instanceof AppError)) throw err;
  if (err.field) return { errors: { [fieldOf(err.field)]: humanField(err.publicMessage) } };
  return { error: humanField(err.publicMessage) };
}

/** "auth.clientSecret: expected a client secret" → "Expected a client secret." for the field it sits beside. */
function humanField(message: string): string {
  const text = message.replace(/^[\w.]+: /, '');
  const sentence = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(sentence) ? sentence : `${sentence}.`;
}

function statusOf(err: unknown): number {
  return err instanceof AppError ? err.status : 500;
}

// Views ------------------------------------------------------------------------------------------------------------

function authSummary(c: ConnectionView): string {
  if (c.auth.type !== 'oauth2') return AUTH_LABELS[c.auth.type];
  const grant = (c.auth as Record<string, unknown>).grant as OAuthGrant | undefined;
  return `OAuth 2.0, ${grant ? GRANT_LABELS[grant].toLowerCase() : 'grant not set'}`;
}

function destinationRow(d: DestinationView) {
  return {
    ...d,
    eventsText: d.events.join(', '),
    badge: d.enabled ? 'ok' : d.disabled_reason ? 'bad' : '',
    state: d.enabled ? (d.failing_since ? 'failing' : 'enabled') : 'disabled',
    failingSince: d.failing_since && formatTime(d.failing_since),
  };
}

function deliveryRow(d: DeliveryView, base: string) {
  return {
    ...d,
    href: `${base}/deliveries/${d.id}`,
    created: formatTimeWithSeconds(d.created_at),
    delivered: d.delivered_at && formatTimeWithSeconds(d.delivered_at),
    nextAttempt: d.next_attempt_at && formatTimeWithSeconds(d.next_attempt_at),
    badge: d.status === 'delivered' ? 'ok' : d.status === 'failed' || d.status === 'dead' ? 'bad' : 'warn',
    statusBadge: d.last_status === null ? undefined : statusBadge(d.last_status),
  };
}

function statusBadge(status: number): string {
  return status >= 200 && status < 300 ? 'ok' : status >= 300 && status < 500 ? 'warn' : 'bad';
}

function testView(test: TestSendView) {
  return {
    eventType: test.event.type,
    request: { ...test.request, headerLines: headerLines(test.request.headers) },
    response: test.response && { ...test.response, headerLines: headerLines(test.response.headers), badge: statusBadge(test.response.status) },
    error: test.error,
    ms: test.duration_ms,
  };
}

function headerLines(headers: Record<string, string>): string {
  return Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}`)
    .join('\n');
}

/** The sample event types offered for a preview and a test: the destination's own types first, then the others. */
function sampleTypesFor(events: string[]): string[] {
  const own = events.filter((e) => !e.includes('*'));
  return [...new Set([...own, ...MEMBER_EVENT_TYPES, 'keap.contact.add', 'keap.contact.edit', 'keap.contactGroup.applied', 'keap.order.add'])];
}

function firstConcreteType(events: string[]): string {
  const concrete = events.find((e) => !e.includes('*'));
  if (concrete) return concrete;
  return events.some((e) => e.startsWith('keap.')) && !events.some((e) => e === '*' || e.startsWith('member.')) ? 'keap.contact.edit' : 'member.updated';
}

/** The secret fields of the connection form: a refused form shows them empty (no secret goes back into a page). */
const SECRET_FIELDS = ['basic_password', 'bearer_token', 'oauth_client_secret', 'oauth_password', 'oauth_assertion'] as const;

/** Whether the refused post carried a secret the admin typed, which the form shown again leaves empty. */
function secretsTyped(req: Request): boolean {
  const body = formFields(req);
  return SECRET_FIELDS.some((field) => formText(body[field]) !== '');
}

function noticeOf(req: Request): string | undefined {
  const done = req.query.done;
  return typeof done === 'string' && Object.hasOwn(NOTICES, done) ? NOTICES[done as keyof typeof NOTICES] : undefined;
}

function idParam(value: unknown): number | undefined {
  return typeof value === 'string' && /^[1-9]\d{0,14}$/.test(value) ? Number(value) : undefined;
}

// The delivery log's filters ----------------------------------------------------------------------------------------

/** `<input type="datetime-local">`'s value, read as UTC (the admin shows every time in UTC). */
const LOCAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/;

function fromLocalInput(value: string): string {
  return new Date(`${value.length === 16 ? `${value}:00` : value}Z`).toISOString();
}

function toLocalInput(iso: string): string {
  return iso.slice(0, 16);
}

interface LogQuery {
  status: string;
  event_type: string;
  from: string;
  to: string;
  page: number;
}

function logQueryOf(req: Request): { query: LogQuery; errors: string[] } {
  const text = (name: string) => (typeof req.query[name] === 'string' ? (req.query[name] as string).trim() : '');
  const errors: string[] = [];
  const query: LogQuery = { status: text('status'), event_type: text('event_type'), from: text('from'), to: text('to'), page: 1 };
  if (query.status && !(DELIVERY_STATUSES as readonly string[]).includes(query.status)) {
    errors.push(`Status: one of ${DELIVERY_STATUSES.join(', ')}.`);
    query.status = '';
  }
  if (query.event_type && !/^[\w.*-]{1,200}$/.test(query.event_type)) errors.push('Event type: letters, digits, dots and underscores, as member.created or keap.contact.edit.');
  for (const [name, label] of [['from', 'From'], ['to', 'To']] as const) {
    if (query[name] && (!LOCAL_TIME.test(query[name]) || Number.isNaN(Date.parse(`${query[name]}Z`)))) errors.push(`${label}: a date and time (UTC), as 2026-12-08T09:30.`);
  }
  const page = text('page');
  if (page) {
    if (/^\d{1,6}$/.test(page) && Number(page) >= 1 && Number(page) <= MAX_PAGE) query.page = Number(page);
    else errors.push(`Page: a whole number from 1 to ${MAX_PAGE}.`);
  }
  return { query, errors };
}

function pickSet(query: LogQuery): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of ['status', 'event_type', 'from', 'to'] as const) if (query[key]) out[key] = query[key];
  return out;
}
