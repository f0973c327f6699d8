import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type request from 'supertest';
import type { OutboundWebhooks } from '../src/features/outbound-webhooks/service.js';
import { adminAgent, memberAgent, testSiteWithAdmin, type TestSite } from './support/admin-site.js';
import { startOAuthServer, type TestOAuthServer } from './support/oauth-server.js';
import { csrfFrom } from './support/pages.js';
import { startReceiver, type Receiver } from './support/receiver.js';

const PAGE = '/admin/settings/outbound-webhooks';
const BEARER = 'bearer-token-for-the-warehouse-0123';
const CLIENT_SECRET = 'client-secret-for-the-warehouse';

let receiver: Receiver;
let oauth: TestOAuthServer;
before(async () => {
  receiver = await startReceiver((req) => ({ status: 202, headers: { 'x-receiver': 'yes' }, body: `got ${req.body.length} bytes` }));
  oauth = await startOAuthServer({ clients: { 'warehouse-client': CLIENT_SECRET } });
});
after(async () => {
  await receiver.close();
  await oauth.close();
});

interface Site extends TestSite {
  agent: request.Agent;
  outbound: OutboundWebhooks;
}

async function site(): Promise<Site> {
  const s = await testSiteWithAdmin({ OUTBOUND_ALLOW_PRIVATE: '1' });
  return { ...s, agent: await adminAgent(s.app), outbound: s.ctx.plugins.service('outboundWebhooks') };
}

/** Posts a form as a browser does, with its token from `pagePath`; a list is a field sent once per value (checkboxes). */
async function submit(agent: request.Agent, pagePath: string, action: string, fields: Record<string, string | string[]>): Promise<request.Response> {
  const page = await agent.get(pagePath);
  return agent.post(action).type('form').send({ _csrf: csrfFrom(page.text), ...fields });
}

/** Text as a browser shows it from the page's HTML (Handlebars escapes `=` too). */
function decoded(html: string): string {
  return html.replace(/&#x3D;/g, '=').replace(/&#x2F;/g, '/').replace(/&quot;/g, '"').replace(/&#x27;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** The signing secret shown on a page, if one is. */
function signingSecretOn(html: string): string | undefined {
  const shown = /data-signing-secret>([^<]+)</.exec(html)?.[1];
  return shown && decoded(shown);
}

/** The text of the field error shown under an input. */
function fieldError(html: string, field: string): string | undefined {
  return new RegExp(`<p class="field-error" id="${field}-error">([^<]*)</p>`).exec(html)?.[1];
}

const connectionFields = (extra: Record<string, string> = {}) => ({ name: 'Warehouse', description: 'the data warehouse', base_url: receiver.url, port: '', auth_type: 'bearer', bearer_token: BEARER, ...extra });

async function createConnection(s: Site, extra: Record<string, string> = {}): Promise<{ id: number; page: request.Response }> {
  const page = await submit(s.agent, `${PAGE}/new`, `${PAGE}/new`, connectionFields(extra));
  assert.equal(page.status, 201, page.text.slice(0, 2000));
  const id = Number(/data-connection-id="(\d+)"/.exec(page.text)![1]);
  return { id, page };
}

test('the page is a Settings tab listing the connections', async () => {
  const s = await site();
  const empty = await s.agent.get(PAGE);
  assert.equal(empty.status, 200);
  assert.match(empty.text, /<nav class="tabs"[^>]*>[\s\S]*href="\/admin\/settings\/outbound-webhooks" aria-current="page">Outbound webhooks</);
  assert.match(empty.text, /id="no-connections"/);
  await createConnection(s);
  const list = await s.agent.get(PAGE);
  assert.match(list.text, /<a href="\/admin\/settings\/outbound-webhooks\/\d+">Warehouse<\/a>/);
  assert.match(list.text, /Bearer token/);
  assert.match(list.text, /<span class="badge ok">ok<\/span>/);

  // A destination whose attempts fail shows in the list, not only on its own page.
  const { id } = (await createConnection(s, { name: 'Flaky' }));
  const destinationId = await createDestination(s, id);
  s.ctx.db.prepare('UPDATE outbound_destinations SET failing_since = ? WHERE id = ?').run(Date.now(), destinationId);
  const failing = await s.agent.get(PAGE);
  assert.match(failing.text, new RegExp(`<tr data-connection-id="${id}">[\\s\\S]*?<span class="badge warn" data-failing="1">1 failing</span> </td>`));

  const { agent } = await memberAgent(s.app);
  assert.equal((await agent.get(PAGE)).status, 403, 'a member without admin rights is kept out');
});

test('creating a connection shows its signing secret once, and never the bearer token', async () => {
  const s = await site();
  const { id, page } = await createConnection(s);
  const secret = signingSecretOn(page.text);
  assert.ok(secret?.startsWith('whsec_'), 'the signing secret is on the page that answers the create');
  assert.ok(!page.text.includes(BEARER));
  assert.equal(s.outbound.secretsOf(s.outbound.connectionRow(id)).signing[0], secret);
  assert.ok(secret);

  const again = await s.agent.get(`${PAGE}/${id}`);
  assert.equal(again.status, 200);
  assert.equal(signingSecretOn(again.text), undefined, 'shown once: not on the next visit');
  assert.ok(!decoded(again.text).includes(secret));
  assert.ok(!again.text.includes(BEARER));
  assert.match(again.text, /\(token set\)/);

  const edit = await s.agent.get(`${PAGE}/${id}/edit`);
  assert.match(edit.text, /<input id="bearer_token" name="bearer_token" type="password"[^>]*placeholder="set — leave empty to keep" data-secret-set/);
  assert.ok(!edit.text.includes(BEARER), 'a secret is never put back into a form');
  assert.ok(!s.logs.text().includes(BEARER) && !s.logs.text().includes(secret), 'nor into the logs');
});

test('an edit that leaves a secret empty keeps it; a new one replaces it', async () => {
  const s = await site();
  const { id } = await createConnection(s);
  const kept = await submit(s.agent, `${PAGE}/${id}/edit`, `${PAGE}/${id}/edit`, connectionFields({ name: 'Warehouse EU', bearer_token: '' }));
  assert.equal(kept.status, 303);
  assert.equal(kept.headers.location, `${PAGE}/${id}?done=saved`);
  assert.equal(s.outbound.getConnection(id).name, 'Warehouse EU');
  assert.deepEqual(s.outbound.secretsOf(s.outbound.connectionRow(id)).auth, { type: 'bearer', token: BEARER });

  await submit(s.agent, `${PAGE}/${id}/edit`, `${PAGE}/${id}/edit`, connectionFields({ bearer_token: 'a-new-token' }));
  assert.deepEqual(s.outbound.secretsOf(s.outbound.connectionRow(id)).auth, { type: 'bearer', token: 'a-new-token' });

  const basic = await submit(s.agent, `${PAGE}/${id}/edit`, `${PAGE}/${id}/edit`, connectionFields({ auth_type: 'basic', basic_username: 'hook', basic_password: '' }));
  assert.equal(basic.status, 400, 'another type needs its own secret');
  assert.equal(fieldError(basic.text, 'basic_password'), 'Expected a password.');
  assert.deepEqual(s.outbound.secretsOf(s.outbound.connectionRow(id)).auth, { type: 'bearer', token: 'a-new-token' }, 'nothing changed');
});

test('the connection form names what is wrong beside the field, and saves nothing', async () => {
  const s = await site();
  const cases: Array<[Record<string, string>, string, RegExp]> = [
    [{ name: '' }, 'name', /required/i],
    [{ base_url: 'ftp://example.com' }, 'base_url', /http/],
    [{ base_url: 'https://user:pw@example.com' }, 'base_url', /user name or password/],
    [{ port: 'eighty' }, 'port', /^A port number from 1 to 65535 \(or none: the URL(&#x27;|')s own\)\.$/],
    [{ port: '70000' }, 'port', /^A port number from 1 to 65535 \(or none: the URL(&#x27;|')s own\)\.$/],
    [{ port: '0' }, 'port', /^A port number from 1 to 65535/],
    [{ bearer_token: '' }, 'bearer_token', /token/],
    [{ auth_type: 'oauth2', oauth_grant: 'client_credentials', oauth_token_url: 'not a url', oauth_client_id: 'c', oauth_client_secret: 's' }, 'oauth_token_url', /http\(s\) URL/],
    [{ auth_type: 'oauth2', oauth_grant: 'password', oauth_token_url: oauth.tokenUrl, oauth_client_id: 'c', oauth_client_secret: 's' }, 'oauth_username', /password grant needs one/],
    [{ auth_type: 'oauth2', oauth_grant: 'jwt_bearer', oauth_token_url: oauth.tokenUrl, oauth_client_id: 'c', oauth_client_secret: 's', oauth_assertion: 'nope' }, 'oauth_assertion', /three base64url parts/],
  ];
  for (const [fields, field, message] of cases) {
    const res = await submit(s.agent, `${PAGE}/new`, `${PAGE}/new`, connectionFields(fields));
    assert.equal(res.status, 400, JSON.stringify(fields));
    assert.match(fieldError(res.text, field) ?? `(no error beside ${field}: ${/id="form-error">([^<]*)/.exec(res.text)?.[1]})`, message, JSON.stringify(fields));
    assert.match(res.text, /Nothing was saved/);
  }
  // The form comes back as typed, secrets excepted.
  const again = await submit(s.agent, `${PAGE}/new`, `${PAGE}/new`, connectionFields({ port: 'eighty', description: 'kept <b>as typed</b>' }));
  assert.match(again.text, /value="kept &lt;b&gt;as typed&lt;\/b&gt;"/);
  assert.ok(!again.text.includes(BEARER));
  assert.equal(s.outbound.listConnections().length, 0);

  await createConnection(s);
  const taken = await submit(s.agent, `${PAGE}/new`, `${PAGE}/new`, connectionFields());
  assert.equal(taken.status, 409);
  assert.match(fieldError(taken.text, 'name') ?? '', /^Another connection has this name\.$/);
  assert.match(taken.text, /id="form-error">Nothing was saved: fix the fields marked below\. Type the password, token or secret again too: they are never sent back to the page\.</, 'the token typed is asked for again, not silently dropped');
  assert.ok(!taken.text.includes(BEARER));
  const noSecret = await submit(s.agent, `${PAGE}/new`, `${PAGE}/new`, connectionFields({ auth_type: 'none', bearer_token: '' }));
  assert.equal(noSecret.status, 409);
  assert.doesNotMatch(noSecret.text, /Type the password, token or secret again/);
});

test('forms without the CSRF token are refused and change nothing', async () => {
  const s = await site();
  const { id } = await createConnection(s);
  const before = s.outbound.secretsOf(s.outbound.connectionRow(id)).signing[0];
  for (const [action, fields] of [
    [`${PAGE}/new`, connectionFields({ name: 'Other' })],
    [`${PAGE}/${id}/rotate`, { overlap_hours: '0', confirm: 'yes' }],
    [`${PAGE}/${id}/delete`, { confirm: 'yes' }],
    [`${PAGE}/${id}/destinations/new`, { name: 'Sneaky', events: 'member.created', intent: 'save' }],
  ] as const) {
    const res = await s.agent.post(action).type('form').send(fields);
    assert.equal(res.status, 403, action);
  }
  assert.equal(s.outbound.listConnections().length, 1);
  assert.equal(s.outbound.secretsOf(s.outbound.connectionRow(id)).signing[0], before);
});

test('rotating the signing secret shows the new one once and keeps the old one signing for the overlap', async () => {
  const s = await site();
  const { id } = await createConnection(s);
  const old = s.outbound.secretsOf(s.outbound.connectionRow(id)).signing[0]!;
  const unconfirmed = await submit(s.agent, `${PAGE}/${id}`, `${PAGE}/${id}/rotate`, { overlap_hours: '24' });
  assert.equal(unconfirmed.status, 400);
  assert.match(fieldError(unconfirmed.text, 'rotate') ?? '', /Tick the box/);
  const badHours = await submit(s.agent, `${PAGE}/${id}`, `${PAGE}/${id}/rotate`, { overlap_hours: '-1', confirm: 'yes' });
  assert.equal(badHours.status, 400);
  assert.equal(s.outbound.secretsOf(s.outbound.connectionRow(id)).signing[0], old);

  const rotated = await submit(s.agent, `${PAGE}/${id}`, `${PAGE}/${id}/rotate`, { overlap_hours: '24', confirm: 'yes' });
  assert.equal(rotated.status, 200);
  const fresh = signingSecretOn(rotated.text);
  assert.ok(fresh && fresh !== old);
  assert.ok(!decoded(rotated.text).includes(old));
  assert.deepEqual(s.outbound.secretsOf(s.outbound.connectionRow(id)).signing, [fresh, old]);
  assert.match(rotated.text, /id="previous-secret">The previous secret also signs every delivery until \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC/);
});

test('deleting a connection asks first', async () => {
  const s = await site();
  const { id } = await createConnection(s);
  const ask = await s.agent.get(`${PAGE}/${id}/delete`);
  assert.match(ask.text, /id="delete-form"/);
  const unconfirmed = await submit(s.agent, `${PAGE}/${id}/delete`, `${PAGE}/${id}/delete`, {});
  assert.equal(unconfirmed.status, 400);
  assert.equal(s.outbound.listConnections().length, 1);
  const done = await submit(s.agent, `${PAGE}/${id}/delete`, `${PAGE}/${id}/delete`, { confirm: 'yes' });
  assert.equal(done.status, 303);
  assert.equal(done.headers.location, `${PAGE}?done=deleted`);
  assert.equal(s.outbound.listConnections().length, 0);
  assert.equal((await s.agent.get(`${PAGE}/${id}`)).status, 404);
});

const destinationFields = (extra: Record<string, string | string[]> = {}) => ({
  name: 'Members',
  description: '',
  method: 'POST',
  content_type: 'application/json',
  path: '/members',
  template: '{"email":{{json data.member.email}},"type":{{json type}} }',
  events: ['member.created', 'member.updated'],
  other_events: 'keap.contact.*',
  filter_tag_id: '',
  filter_role: '',
  enabled: 'yes',
  intent: 'save',
  ...extra,
});

async function createDestination(s: Site, connectionId: number, extra: Record<string, string | string[]> = {}): Promise<number> {
  const res = await submit(s.agent, `${PAGE}/${connectionId}/destinations/new`, `${PAGE}/${connectionId}/destinations/new`, destinationFields(extra));
  assert.equal(res.status, 303, res.text.slice(0, 3000));
  return Number(/destinations\/(\d+)\?done=saved$/.exec(res.headers.location!)![1]);
}

test('a destination is created with its events, filters and template', async () => {
  const s = await site();
  const { id } = await createConnection(s);
  const form = await s.agent.get(`${PAGE}/${id}/destinations/new`);
  assert.match(form.text, /<input type="checkbox" name="events" value="member\.\*" checked>/, 'a new destination takes member events');
  assert.match(form.text, /<textarea id="template"[^>]*>\{\n {2}&quot;type&quot;: \{\{json type\}\}/, 'the editor starts from the default template');
  assert.match(form.text, /<option value="member">/, 'roles to filter on');

  const destinationId = await createDestination(s, id, { filter_role: 'member' });
  const saved = s.outbound.getDestination(destinationId);
  assert.deepEqual(saved.events, ['member.created', 'member.updated', 'keap.contact.*']);
  assert.equal(saved.filter_role, 'member');
  assert.equal(saved.template, '{"email":{{json data.member.email}},"type":{{json type}} }');
  assert.equal(saved.url, `${receiver.url}/members`);

  const page = await s.agent.get(`${PAGE}/${id}/destinations/${destinationId}`);
  assert.match(page.text, /<input id="other_events" name="other_events" type="text" value="keap\.contact\.\*"/);
  assert.match(page.text, /<option value="member" selected>/);
  assert.match((await s.agent.get(`${PAGE}/${id}`)).text, /data-destination-id="\d+" data-state="enabled"/);

  // The default template saved as it is means "the default" (null), so a later change of the default applies.
  const plain = await createDestination(s, id, { name: 'Plain', template: (await s.agent.get(`${PAGE}/${id}/destinations/new`)).text.match(/<textarea id="template"[^>]*>([\s\S]*?)<\/textarea>/)![1]!.replace(/&quot;/g, '"') });
  assert.equal(s.outbound.getDestination(plain).template, null);
});

test('the destination form refuses a broken template, no events, a bad path, naming the field', async () => {
  const s = await site();
  const { id } = await createConnection(s);
  const cases: Array<[Record<string, string | string[]>, string, RegExp]> = [
    [{ template: '{"data":{{json data}}}' }, 'template', /put a space or a new line between them/],
    [{ template: '{{#each data}}' }, 'template', /does not compile/],
    [{ template: '{{> partial}}' }, 'template', /partials/],
    [{ events: [], other_events: '' }, 'events', /lists no event/i],
    [{ other_events: 'contact.edit' }, 'events', /not an event type/],
    [{ path: '/with space' }, 'path', /spaces/],
    [{ content_type: 'json' }, 'content_type', /media type/],
    [{ method: 'DELETE' }, 'method', /POST|GET|PUT|PATCH/],
  ];
  for (const [fields, field, message] of cases) {
    const res = await submit(s.agent, `${PAGE}/${id}/destinations/new`, `${PAGE}/${id}/destinations/new`, destinationFields(fields));
    assert.equal(res.status, 400, JSON.stringify(fields));
    assert.match(fieldError(res.text, field) ?? `(nothing beside ${field}: ${/id="form-error">([^<]*)/.exec(res.text)?.[1]})`, message, JSON.stringify(fields));
  }
  assert.equal(s.outbound.listDestinations(id).length, 0);
});

test('Preview renders the template on a sample event without saving', async () => {
  const s = await site();
  const { id } = await createConnection(s);
  const res = await submit(s.agent, `${PAGE}/${id}/destinations/new`, `${PAGE}/${id}/destinations/new`, destinationFields({ intent: 'preview', preview_event: 'member.tags_changed', template: '{"email":{{json data.member.email}},"added":{{json data.added}} }' }));
  assert.equal(res.status, 200);
  const body = /<pre id="preview-body">([\s\S]*?)<\/pre>/.exec(res.text)?.[1]?.replace(/&quot;/g, '"');
  assert.deepEqual(JSON.parse(body!), { email: 'ada@example.com', added: [{ id: 93, name: 'VIP', category: 'Membership' }] });
  assert.match(res.text, /<textarea id="template"[^>]*>\{&quot;email&quot;/, 'the form keeps what was typed');
  assert.equal(s.outbound.listDestinations(id).length, 0, 'nothing saved');

  const broken = await submit(s.agent, `${PAGE}/${id}/destinations/new`, `${PAGE}/${id}/destinations/new`, destinationFields({ intent: 'preview', template: '{{date timestamp format="nonsense"}}' }));
  assert.match(broken.text, /id="preview-error">The template does not render member.created: date: unknown format/);
});

test('Send test shows the request without secrets and the answer', async () => {
  const s = await site();
  const { id } = await createConnection(s);
  const destinationId = await createDestination(s, id);
  const before = receiver.received.length;
  const res = await submit(s.agent, `${PAGE}/${id}/destinations/${destinationId}`, `${PAGE}/${id}/destinations/${destinationId}/test`, { event_type: 'member.updated' });
  assert.equal(res.status, 200);
  assert.equal(receiver.received.length, before + 1);
  const got = receiver.received.at(-1)!;
  assert.equal(got.headers.authorization, `Bearer ${BEARER}`);
  assert.equal(got.path, '/members');
  assert.deepEqual(JSON.parse(got.body), { email: 'ada@example.com', type: 'member.updated' });

  const request = /<pre id="test-request">([\s\S]*?)<\/pre>/.exec(res.text)![1]!;
  assert.match(request, new RegExp(`^POST ${receiver.url}/members\n`));
  assert.match(request, /webhook-signature: v1,/);
  assert.match(request, /authorization: \[redacted\]/i);
  assert.ok(!res.text.includes(BEARER), 'the token is not on the page');
  assert.match(res.text, /id="test-status">202</);
  assert.match(/<pre id="test-response">([\s\S]*?)<\/pre>/.exec(res.text)![1]!, /x-receiver: yes[\s\S]*got \d+ bytes/);
  assert.equal(s.outbound.listDeliveries({ destination_id: destinationId, per_page: 10 }).total, 0, 'a test is not a delivery');
});

test('a failing OAuth token endpoint shows on the connection page', async () => {
  const s = await site();
  const { id } = await createConnection(s, { auth_type: 'oauth2', oauth_grant: 'client_credentials', oauth_token_url: oauth.tokenUrl, oauth_client_id: 'warehouse-client', oauth_client_secret: 'the-wrong-secret', bearer_token: '' });
  const destinationId = await createDestination(s, id);
  const test = await submit(s.agent, `${PAGE}/${id}/destinations/${destinationId}`, `${PAGE}/${id}/destinations/${destinationId}/test`, {});
  assert.match(test.text, /The token endpoint answered 401: invalid_client \(Client authentication failed\)/);
  const page = await s.agent.get(`${PAGE}/${id}`);
  assert.match(page.text, /id="token-error"><strong>The OAuth token endpoint failed<\/strong> \([^)]+\): The token endpoint answered 401: invalid_client/);
  assert.match((await s.agent.get(PAGE)).text, /data-token-error/);
  assert.ok(!page.text.includes('the-wrong-secret'));

  // The right secret: the error goes with the next token.
  await submit(s.agent, `${PAGE}/${id}/edit`, `${PAGE}/${id}/edit`, connectionFields({ auth_type: 'oauth2', oauth_grant: 'client_credentials', oauth_token_url: oauth.tokenUrl, oauth_client_id: 'warehouse-client', oauth_client_secret: CLIENT_SECRET, bearer_token: '' }));
  const ok = await submit(s.agent, `${PAGE}/${id}/destinations/${destinationId}`, `${PAGE}/${id}/destinations/${destinationId}/test`, {});
  assert.match(ok.text, /id="test-status">202</);
  assert.doesNotMatch((await s.agent.get(`${PAGE}/${id}`)).text, /id="token-error"/);
});

test('a destination is disabled and enabled again', async () => {
  const s = await site();
  const { id } = await createConnection(s);
  const destinationId = await createDestination(s, id);
  const taken = await submit(s.agent, `${PAGE}/${id}/destinations/new`, `${PAGE}/${id}/destinations/new`, destinationFields());
  assert.equal(taken.status, 409);
  assert.match(fieldError(taken.text, 'name') ?? '', /^Another destination of this connection has this name\.$/);
  const off = await submit(s.agent, `${PAGE}/${id}/destinations/${destinationId}`, `${PAGE}/${id}/destinations/${destinationId}/enabled`, { enabled: 'no' });
  assert.equal(off.status, 303);
  assert.equal(s.outbound.getDestination(destinationId).enabled, false);
  assert.match((await s.agent.get(off.headers.location!)).text, /id="destination-state" data-enabled="no"/);
  await submit(s.agent, `${PAGE}/${id}/destinations/${destinationId}`, `${PAGE}/${id}/destinations/${destinationId}/enabled`, { enabled: 'yes' });
  assert.equal(s.outbound.getDestination(destinationId).enabled, true);

  // A save of the form leaves it as it is: memberhook may have turned it off since the page was loaded.
  await submit(s.agent, `${PAGE}/${id}/destinations/${destinationId}`, `${PAGE}/${id}/destinations/${destinationId}/enabled`, { enabled: 'no' });
  const saved = await submit(s.agent, `${PAGE}/${id}/destinations/${destinationId}`, `${PAGE}/${id}/destinations/${destinationId}`, destinationFields({ name: 'Renamed', enabled: 'yes' }));
  assert.equal(saved.status, 303);
  assert.equal(s.outbound.getDestination(destinationId).name, 'Renamed');
  assert.equal(s.outbound.getDestination(destinationId).enabled, false);
});

test('the delivery log filters, shows each attempt, replays one and the failed ones of a time range', async () => {
  const s = await site();
  const { id } = await createConnection(s);
  // A template that renders the sample events but not an event whose member has a number for a format: such a
  // delivery is recorded as failed, which is how this test gets failed deliveries without a dispatcher running.
  const destinationId = await createDestination(s, id, { template: '{"when":"{{date timestamp format=data.member.fields.format}}"}' });
  const otherDestination = await createDestination(s, id, { name: 'Other' });
  const member = (format: unknown) => ({ member: { id: 1, email: 'a@example.com', fields: { format } } });
  const at = (minutes: number) => new Date(Date.parse('2026-12-08T10:00:00.000Z') + minutes * 60_000).toISOString();
  s.outbound.recordEvent({ id: 'evt_ok_1', type: 'member.created', timestamp: at(0), data: member('epoch') }, { tagIds: [], role: 'member' });
  s.outbound.recordEvent({ id: 'evt_bad_1', type: 'member.updated', timestamp: at(5), data: member(5) }, { tagIds: [], role: 'member' });
  s.outbound.recordEvent({ id: 'evt_bad_2', type: 'member.updated', timestamp: at(120), data: member(7) }, { tagIds: [], role: 'member' });

  const log = `${PAGE}/${id}/destinations/${destinationId}/log`;
  const all = await s.agent.get(log);
  assert.equal(all.status, 200);
  assert.match(all.text, /data-total="3"/);
  const failed = await s.agent.get(`${log}?status=failed`);
  assert.match(failed.text, /data-total="2"/);
  assert.match(failed.text, /the template could not render this event/);
  assert.match((await s.agent.get(`${log}?event_type=member.created`)).text, /data-total="1"/);
  assert.match((await s.agent.get(`${log}?from=2026-12-08T10:01&to=2026-12-08T11:00`)).text, /data-total="1"/);
  const bad = await s.agent.get(`${log}?status=lost&from=yesterday`);
  assert.equal(bad.status, 400);
  assert.match(bad.text, /Status: one of queued, delivering, delivered, failed, dead/);
  assert.match(bad.text, /From: a date and time/);
  assert.match((await s.agent.get(`${PAGE}/${id}/destinations/${otherDestination}/log`)).text, /data-total="3"/, 'each destination has its own log');

  // One delivery's page, and a replay of it.
  const deliveryId = Number(/data-delivery-id="(\d+)" data-status="failed"/.exec(failed.text)![1]);
  const detail = await s.agent.get(`${log.replace(/\/log$/, '')}/deliveries/${deliveryId}`);
  assert.equal(detail.status, 200);
  assert.match(detail.text, /id="delivery-status" data-status="failed"/);
  assert.match(detail.text, /id="replay-form"/);
  const queuedId = Number(/data-delivery-id="(\d+)" data-status="queued"/.exec(all.text)![1]);
  const notYet = await submit(s.agent, `${log.replace(/\/log$/, '')}/deliveries/${queuedId}`, `${log.replace(/\/log$/, '')}/deliveries/${queuedId}/replay`, {});
  assert.equal(notYet.status, 409);
  assert.match(notYet.text, /It was not replayed: delivery \d+ is queued already/);

  // Replay the failed ones of a range: only the first failure is in it.
  const unconfirmed = await submit(s.agent, log, `${PAGE}/${id}/destinations/${destinationId}/replay-failed`, { from: '2026-12-08T10:00', to: '2026-12-08T11:00' });
  assert.equal(unconfirmed.status, 400);
  assert.match(unconfirmed.text, /Tick the box to confirm/);
  const backwards = await submit(s.agent, log, `${PAGE}/${id}/destinations/${destinationId}/replay-failed`, { from: '2026-12-08T11:00', to: '2026-12-08T10:00', confirm: 'yes' });
  assert.equal(backwards.status, 400);
  assert.match(backwards.text, /Must be after from\. Nothing was replayed/);
  const replayed = await submit(s.agent, log, `${PAGE}/${id}/destinations/${destinationId}/replay-failed`, { from: '2026-12-08T10:00', to: '2026-12-08T11:00', confirm: 'yes' });
  assert.equal(replayed.status, 200);
  assert.match(replayed.text, /1 failed or dead delivery is queued again/);
  assert.equal(s.outbound.listDeliveries({ destination_id: destinationId, status: 'failed', per_page: 10 }).total, 1);

  const replayOne = await submit(s.agent, log, `${log.replace(/\/log$/, '')}/deliveries/${Number(/data-delivery-id="(\d+)" data-status="failed"/.exec((await s.agent.get(`${log}?status=failed`)).text)![1])}/replay`, {});
  assert.equal(replayOne.status, 303);
  assert.match(replayOne.headers.location!, /\?done=replayed$/);
  assert.equal(s.outbound.listDeliveries({ destination_id: destinationId, status: 'failed', per_page: 10 }).total, 0);
  assert.match((await s.agent.get(replayOne.headers.location!)).text, /The delivery is queued again, with the same event id and body\.</);

  // A replay for a disabled destination waits for Enable, and its page says so rather than showing a time.
  await submit(s.agent, `${PAGE}/${id}/destinations/${destinationId}`, `${PAGE}/${id}/destinations/${destinationId}/enabled`, { enabled: 'no' });
  const waiting = await s.agent.get(replayOne.headers.location!);
  assert.match(waiting.text, /It is sent when the destination is enabled again \(it is disabled\): Enable it on the destination(&#x27;|')s page\./);
  assert.match(waiting.text, /<dt>Next attempt<\/dt><dd>when the destination is enabled again \(it is disabled\)<\/dd>/);
});

test('unknown or mismatched ids are a 404 page', async () => {
  const s = await site();
  const a = await createConnection(s);
  const b = await createConnection(s, { name: 'Other' });
  const destinationOfA = await createDestination(s, a.id);
  for (const path of [`${PAGE}/999`, `${PAGE}/abc`, `${PAGE}/${b.id}/destinations/${destinationOfA}`, `${PAGE}/${a.id}/destinations/999/log`, `${PAGE}/${a.id}/destinations/${destinationOfA}/deliveries/999`]) {
    const res = await s.agent.get(path);
    assert.equal(res.status, 404, path);
    assert.match(res.text, /id="missing-message"/);
  }
  const csrf = csrfFrom((await s.agent.get(PAGE)).text);
  assert.equal((await s.agent.post(`${PAGE}/${b.id}/destinations/${destinationOfA}/delete`).type('form').send({ _csrf: csrf, confirm: 'yes' })).status, 404);
  assert.equal(s.outbound.listDestinations(a.id).length, 1);
});

test('Send test to a private address, without OUTBOUND_ALLOW_PRIVATE, shows the refusal and sends nothing', async () => {
  const s = await testSiteWithAdmin();
  const agent = await adminAgent(s.app);
  const outbound: OutboundWebhooks = s.ctx.plugins.service('outboundWebhooks');
  const { connection } = outbound.createConnection({ name: 'Internal', base_url: receiver.url });
  const destination = outbound.createDestination({ connection_id: connection.id, name: 'Local', events: ['member.*'] });
  const before = receiver.received.length;
  const res = await submit(agent, `${PAGE}/${connection.id}/destinations/${destination.id}`, `${PAGE}/${connection.id}/destinations/${destination.id}/test`, {});
  assert.equal(res.status, 200);
  assert.match(res.text, /data-test-status="error"/);
  assert.match(res.text, /id="test-failure">[^<]*private, loopback, link-local or reserved address[^<]*OUTBOUND_ALLOW_PRIVATE(=|&#x3D;)1/);
  assert.equal(receiver.received.length, before);

  // The forms on the destination's page and its log need the token too.
  for (const action of [`${PAGE}/${connection.id}/destinations/${destination.id}/test`, `${PAGE}/${connection.id}/destinations/${destination.id}/enabled`, `${PAGE}/${connection.id}/destinations/${destination.id}/replay-failed`]) {
    assert.equal((await agent.post(action).type('form').send({ enabled: 'no', from: '2026-12-08T00:00', to: '2026-12-09T00:00', confirm: 'yes' })).status, 403, action);
  }
  assert.equal(receiver.received.length, before);
  assert.equal(outbound.getDestination(destination.id).enabled, true);
});
