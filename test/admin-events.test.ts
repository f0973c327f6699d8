import { test } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import type { AppContext } from '../src/server.js';
import type { EventStatus } from '../src/core/jobs/store.js';
import { REPLAY_FAILED_CONFIRM_MESSAGE } from '../src/features/events/admin-routes.js';
import { CSRF_FAILED_MESSAGE } from '../src/core/csrf.js';
import { adminAgent, createMember, memberAgent, MEMBER_PASSWORD, submitForm, testSiteWithAdmin, TEST_SITE_ACCESS_KEY, type TestSite } from './support/admin-site.js';
import { alertOf, csrfFrom } from './support/pages.js';

/** A finished job: enqueued, claimed by a pretend worker and finished with `status`. */
function finishedEvent(site: TestSite, contactId: number | null, status: Exclude<EventStatus, 'queued' | 'processing' | 'rejected'>, detail: { error?: string; result?: string } = {}, action = 'add'): number {
  const { ctx, clock } = site;
  const { id } = ctx.events.enqueue({ source: 'http_post', action, contactId, params: { contact_id: contactId } });
  const job = ctx.events.claimNext('test-worker', clock.now(), 60_000);
  assert.equal(job?.id, id, 'the fixture job is the one claimed');
  ctx.events.finish(job, status, detail);
  return id;
}

function rowsOf(html: string): Array<{ id: number; status: string }> {
  return [...html.matchAll(/<tr data-event-id="(\d+)" data-status="([a-z]+)">/g)].map((m) => ({ id: Number(m[1]), status: m[2]! }));
}

/** The page as text with Handlebars' attribute escapes undone (it writes `=` as `&#x3D;`). */
function decoded(html: string): string {
  return html.replaceAll('&#x3D;', '=').replaceAll('&amp;', '&');
}

function statusOf(ctx: AppContext, id: number): string | undefined {
  return ctx.events.get(id)?.status;
}

function noticeOf(html: string): string | undefined {
  return /<p class="notice" role="status">([^<]*)<\/p>/.exec(html)?.[1];
}


test('events pages send anonymous visitors to the admin login and refuse members without admin rights', async () => {
  const site = await testSiteWithAdmin();
  const id = finishedEvent(site, 7, 'failed', { error: 'boom' });
  const anonymous = request.agent(site.app);
  for (const path of ['/admin/events', '/admin/events?status=failed', `/admin/events/${id}`, '/admin/events/replay-failed']) {
    const res = await anonymous.get(path);
    assert.equal(res.status, 303, path);
    assert.equal(res.headers.location, `/admin/login?next=${encodeURIComponent(path).replace(/%2F/gi, '/')}`);
  }
  const token = csrfFrom((await anonymous.get('/admin/login')).text);
  for (const path of [`/admin/events/${id}/replay`, '/admin/events/replay-failed']) {
    const res = await anonymous.post(path).type('form').send({ _csrf: token, confirm: 'yes' });
    assert.equal(res.status, 303, path);
    assert.equal(res.headers.location, '/admin/login');
  }

  const ada = (await memberAgent(site.app)).agent;
  for (const path of ['/admin/events', `/admin/events/${id}`, '/admin/events/replay-failed']) {
    const res = await ada.get(path);
    assert.equal(res.status, 403, path);
    assert.match(res.text, /no admin rights/);
  }
  const adaToken = csrfFrom((await ada.get('/account')).text);
  for (const path of [`/admin/events/${id}/replay`, '/admin/events/replay-failed']) {
    const res = await ada.post(path).type('form').send({ _csrf: adaToken, confirm: 'yes' });
    assert.equal(res.status, 403, path);
  }
  assert.equal(statusOf(site.ctx, id), 'failed', 'nobody replayed it');
});

test('replay posts without the form token are refused and change nothing', async () => {
  const site = await testSiteWithAdmin();
  const id = finishedEvent(site, 7, 'failed', { error: 'boom' });
  const agent = await adminAgent(site.app);
  for (const path of [`/admin/events/${id}/replay`, '/admin/events/replay-failed']) {
    const missing = await agent.post(path).type('form').send({ confirm: 'yes' });
    assert.equal(missing.status, 403, `${path} without a token`);
    assert.match(missing.text, new RegExp(CSRF_FAILED_MESSAGE.replace('.', '\\.')));
    const wrong = await agent.post(path).type('form').send({ _csrf: 'x'.repeat(43), confirm: 'yes' });
    assert.equal(wrong.status, 403, `${path} with a wrong token`);
  }
  assert.equal(statusOf(site.ctx, id), 'failed');
});

test('the event list shows every event newest first with its status, attempts and error or result, and rejected requests with their reason', async () => {
  const site = await testSiteWithAdmin();
  const { ctx } = site;
  const failed = finishedEvent(site, 11, 'failed', { error: 'Keap says contact 11 does not exist' });
  const done = finishedEvent(site, 12, 'done', { result: 'created member 3' }, 'update');
  const rejected = ctx.events.recordRejected({ source: 'http_post', action: 'add', contactId: 13, params: { access_key: '(given)' } }, 'role "vip" does not exist');
  const long = finishedEvent(site, 15, 'dead', { error: `gave up: ${'x'.repeat(400)}` });
  const queued = ctx.events.enqueue({ source: 'rest_hook', action: 'update_tags', contactId: 14, params: {} }).id;

  const agent = await adminAgent(site.app);
  const res = await agent.get('/admin/events');
  assert.equal(res.status, 200);
  assert.equal(res.headers['cache-control'], 'no-store');
  assert.deepEqual(rowsOf(res.text), [
    { id: queued, status: 'queued' },
    { id: long, status: 'dead' },
    { id: rejected, status: 'rejected' },
    { id: done, status: 'done' },
    { id: failed, status: 'failed' },
  ]);
  assert.match(res.text, /id="event-total" data-total="5"/);
  assert.match(res.text, /Keap says contact 11 does not exist/);
  assert.match(res.text, /<span class="muted">created member 3<\/span>/, 'what a finished job did, when nothing failed');
  assert.match(res.text, /role &quot;vip&quot; does not exist/, 'the rejection reason, escaped');
  assert.match(res.text, new RegExp(`<a href="/admin/events/${failed}">#${failed}</a>`));
  assert.doesNotMatch(res.text, /x{300}/, 'long errors are shortened in the list');
  assert.match(res.text, /<span class="badge bad">failed<\/span>/);
  assert.match(res.text, /<span class="badge ok">done<\/span>/);
  assert.match(res.text, /<span class="badge bad">rejected<\/span>/);
  // The replay-all link counts failed and dead events.
  assert.match(res.text, /href="\/admin\/events\/replay-failed"[^>]*>Replay failed and dead \(2\)/);
});

test('the event list filters by status, action, source and contact id', async () => {
  const site = await testSiteWithAdmin();
  const { ctx } = site;
  const a = finishedEvent(site, 21, 'failed', { error: 'e' });
  const b = finishedEvent(site, 22, 'done', {}, 'update');
  const c = ctx.events.enqueue({ source: 'rest_hook', action: 'update', contactId: 21, params: {} }).id;
  const d = ctx.events.recordRejected({ source: 'http_post', action: '(none)', contactId: null, params: {} }, 'invalid access key');
  const agent = await adminAgent(site.app);
  const ids = async (query: string) => {
    const res = await agent.get(`/admin/events${query}`);
    assert.equal(res.status, 200, query);
    return rowsOf(res.text).map((r) => r.id);
  };
  assert.deepEqual(await ids('?status=failed'), [a]);
  assert.deepEqual(await ids('?status=rejected'), [d]);
  assert.deepEqual(await ids('?action=update'), [c, b]);
  assert.deepEqual(await ids('?source=rest_hook'), [c]);
  assert.deepEqual(await ids('?contact_id=21'), [c, a]);
  assert.deepEqual(await ids('?contact_id=21&action=update'), [c]);
  assert.deepEqual(await ids('?status=&action=&source=&contact_id='), [d, c, b, a], 'empty filters are no filters');
  assert.deepEqual(await ids('?status=dead'), []);
  const none = await agent.get('/admin/events?status=dead');
  assert.match(none.text, /No events match these filters/);
  // The form shows the filters in use.
  const shown = await agent.get('/admin/events?status=failed&contact_id=21&action=add&source=http_post');
  assert.match(shown.text, /<option value="failed" selected>failed<\/option>/);
  assert.match(shown.text, /id="filter-contact" name="contact_id" type="text" value="21"/);
  assert.match(shown.text, /<label for="filter-action">Action<\/label>/);
});

test('bad filter values get a 400 page naming the problem, never a 500', async () => {
  const site = await testSiteWithAdmin();
  finishedEvent(site, 31, 'failed', { error: 'e' });
  const agent = await adminAgent(site.app);
  const cases: Array<[string, RegExp]> = [
    ['?status=exploded', /Status &quot;exploded&quot; is not one of queued, processing/],
    ['?contact_id=abc', /Contact id must be a positive whole number/],
    ['?contact_id=-4', /Contact id must be a positive whole number/],
    ['?contact_id=99999999999999999999', /Contact id must be a positive whole number/],
    ['?page=0', /Page must be a whole number/],
    ['?page=2.5', /Page must be a whole number/],
    ['?status=failed&status=dead', /Status was given more than once/],
    [`?action=${'a'.repeat(65)}`, /Action is at most 64 characters/],
    ['?source[x]=1', /Source|x/],
  ];
  for (const [query, message] of cases) {
    const res = await agent.get(`/admin/events${query}`);
    if (query === '?source[x]=1') {
      // The simple query parser keeps "source[x]" as an unknown name: ignored.
      assert.equal(res.status, 200, query);
      continue;
    }
    assert.equal(res.status, 400, query);
    assert.match(alertOf(res.text) ?? '', message, query);
    assert.equal(rowsOf(res.text).length, 0, `${query}: no table`);
    assert.match(res.text, /id="event-filters"/, `${query}: the filter form is still there`);
  }
});

test('the event list pages through 50 at a time with the total, keeping the filters', async () => {
  const site = await testSiteWithAdmin();
  const { ctx } = site;
  ctx.db.transaction(() => {
    for (let i = 1; i <= 120; i++) ctx.events.recordRejected({ source: 'http_post', action: 'add', contactId: i, params: {} }, `reason ${i}`);
    ctx.events.enqueue({ source: 'poll', action: 'update', contactId: 9000, params: {} });
  })();
  const agent = await adminAgent(site.app);
  const first = await agent.get('/admin/events?status=rejected');
  assert.equal(rowsOf(first.text).length, 50);
  assert.match(first.text, /data-total="120"/);
  assert.match(first.text, /1–50 of 120 · page 1 of 3/);
  assert.match(first.text, /id="pager-next"/);
  assert.match(decoded(first.text), /href="\/admin\/events\?status=rejected&page=2" rel="next"/);
  assert.doesNotMatch(first.text, /id="pager-prev"/);

  const third = await agent.get('/admin/events?status=rejected&page=3');
  const rows = rowsOf(third.text);
  assert.equal(rows.length, 20);
  assert.ok(rows.every((r) => r.status === 'rejected'));
  assert.match(third.text, /101–120 of 120 · page 3 of 3/);
  assert.doesNotMatch(third.text, /id="pager-next"/);
  assert.match(decoded(third.text), /href="\/admin\/events\?status=rejected&page=2" rel="prev"/);

  const beyond = await agent.get('/admin/events?status=rejected&page=9');
  assert.equal(beyond.status, 200);
  assert.equal(rowsOf(beyond.text).length, 0);
  assert.match(beyond.text, /There is no page 9/);
});

test('the event page shows every column, escaped parameters without the access key, the attempts and the member', async () => {
  const site = await testSiteWithAdmin();
  const { ctx, app, clock } = site;
  const linked = await createMember(ctx, { email: 'grace@example.com', username: 'grace', role: 'member', password: MEMBER_PASSWORD, keapContactId: 77 });

  // Through the real receiver: the access key and a secret-looking parameter arrive with the post.
  const post = await request(app)
    .post('/webhooks/keap')
    .type('form')
    .send({ contactId: '77', wpf_action: 'update', access_key: TEST_SITE_ACCESS_KEY, api_password: 'hunter2-hunter2', note: '<script>alert(1)</script>' });
  assert.equal(post.status, 200);
  const id = (post.body as { event_id: number }).event_id;
  // A duplicate post folds into it.
  await request(app).post('/webhooks/keap').type('form').send({ contactId: '77', wpf_action: 'update', access_key: TEST_SITE_ACCESS_KEY });
  // Two attempts: a retry, then a failure.
  const first = ctx.events.claimNext('w1', clock.now(), 60_000)!;
  assert.equal(first.id, id);
  ctx.events.retry(first, clock.now(), 'Keap answered 503', false);
  const second = ctx.events.claimNext('w1', clock.now(), 60_000)!;
  ctx.events.finish(second, 'failed', { error: 'no email on contact 77' });

  const agent = await adminAgent(app);
  const res = await agent.get(`/admin/events/${id}`);
  assert.equal(res.status, 200);
  assert.doesNotMatch(res.text, new RegExp(TEST_SITE_ACCESS_KEY), 'the access key is nowhere on the page');
  assert.doesNotMatch(res.text, /hunter2/);
  assert.doesNotMatch(res.text, /<script>alert/, 'parameters are escaped');
  assert.match(res.text, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  const params = /<pre id="event-params">([^<]*)<\/pre>/.exec(res.text)?.[1];
  assert.ok(params, 'the parameters are in a <pre>');
  const parsed = JSON.parse(params.replaceAll('&quot;', '"').replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&#x2F;', '/').replaceAll('&#x3D;', '=')) as Record<string, unknown>;
  assert.equal(parsed.contact_id, 77);
  assert.equal(parsed.api_password, '[redacted]');
  assert.equal(parsed.access_key, undefined);

  assert.match(res.text, /id="event-status" data-status="failed">failed</);
  assert.match(res.text, /<dd>http_post<\/dd>/);
  assert.match(res.text, /<dd>update<\/dd>/);
  assert.match(res.text, /<dd>contact\.update<\/dd>/);
  assert.match(res.text, /<dd>contact 77<\/dd>/);
  assert.match(res.text, /data-attempts="2"/);
  assert.match(res.text, /data-coalesced="1"/);
  assert.match(res.text, /data-throttled="0"/);
  assert.match(res.text, /Last error:<\/strong> no email on contact 77/);
  assert.match(res.text, new RegExp(`<a href="/admin/members/${linked.id}" id="member-link">grace@example.com</a>`));
  assert.match(res.text, /<tr data-attempt="1" data-outcome="retry">[\s\S]*?Keap answered 503/);
  assert.match(res.text, /<tr data-attempt="2" data-outcome="failed">[\s\S]*?no email on contact 77/);
  assert.match(res.text, /id="replay-form"/, 'a failed event can be replayed');
});

test('parameters recorded by any source are shown without secrets: secret-looking names and the access key are hidden', async () => {
  const site = await testSiteWithAdmin();
  const { ctx } = site;
  const id = ctx.events.recordRejected(
    { source: 'plugin', action: 'add', contactId: null, params: { note: `key=${TEST_SITE_ACCESS_KEY}`, nested: { refresh_token: 'rt-secret-value' }, access_key: '(given)' } },
    'test',
  );
  const agent = await adminAgent(site.app);
  const res = await agent.get(`/admin/events/${id}`);
  assert.equal(res.status, 200);
  assert.doesNotMatch(res.text, new RegExp(TEST_SITE_ACCESS_KEY));
  assert.doesNotMatch(res.text, /rt-secret-value/);
  assert.match(res.text, /&quot;access_key&quot;: &quot;\(given\)&quot;/, 'the receiver\'s own marker is kept');
  assert.match(res.text, /Why it was rejected/);
  assert.match(res.text, /Reason:<\/strong> test/);
  assert.match(res.text, /A rejected request never runs/);
  assert.doesNotMatch(res.text, /id="replay-form"/, 'no replay button for a rejected request');
  assert.match(res.text, /id="event-member"><span class="muted">–<\/span>/);
});

test('an unknown or malformed event id is a 404 page', async () => {
  const site = await testSiteWithAdmin();
  const agent = await adminAgent(site.app);
  for (const path of ['/admin/events/999', '/admin/events/abc', '/admin/events/0', '/admin/events/1e3']) {
    const res = await agent.get(path);
    assert.equal(res.status, 404, path);
    assert.match(res.text, /No such event/);
  }
  const post = await submitForm(agent, '/admin/events', '/admin/events/999/replay', {});
  assert.equal(post.status, 404);
});

test('replaying a failed, dead or done event queues it again from scratch; rejected and queued events are refused', async () => {
  const site = await testSiteWithAdmin();
  const { ctx } = site;
  const failed = finishedEvent(site, 41, 'failed', { error: 'boom' });
  const dead = finishedEvent(site, 42, 'dead', { error: 'gave up' });
  const done = finishedEvent(site, 43, 'done', { result: 'ok' });
  const rejected = ctx.events.recordRejected({ source: 'http_post', action: 'add', contactId: 44, params: {} }, 'invalid access key');
  const queued = ctx.events.enqueue({ source: 'http_post', action: 'add', contactId: 45, params: {} }).id;
  const agent = await adminAgent(site.app);

  for (const id of [failed, dead, done]) {
    const res = await submitForm(agent, `/admin/events/${id}`, `/admin/events/${id}/replay`, {});
    assert.equal(res.status, 303, `event ${id}`);
    assert.equal(res.headers.location, `/admin/events/${id}?replayed=1`);
    const event = ctx.events.get(id)!;
    assert.equal(event.status, 'queued');
    assert.equal(event.attempts, 0);
    assert.equal(event.error, null);
    assert.equal(event.result, null);
    const page = await agent.get(res.headers.location!);
    assert.equal(noticeOf(page.text), `Event #${id} is queued to run again.`);
  }

  const refusedRejected = await submitForm(agent, `/admin/events/${rejected}`, `/admin/events/${rejected}/replay`, {});
  assert.equal(refusedRejected.status, 400);
  assert.match(alertOf(refusedRejected.text) ?? '', /was rejected when it arrived; there is no job to replay/);
  assert.equal(statusOf(ctx, rejected), 'rejected');

  const refusedQueued = await submitForm(agent, `/admin/events/${queued}`, `/admin/events/${queued}/replay`, {});
  assert.equal(refusedQueued.status, 409);
  assert.match(alertOf(refusedQueued.text) ?? '', /is queued already/);
  assert.equal(ctx.events.get(queued)!.attempts, 0);
});

test('replay all failed asks first, then queues every failed and dead event again in one go', async () => {
  const site = await testSiteWithAdmin();
  const { ctx } = site;
  const failed = [finishedEvent(site, 51, 'failed', { error: 'a' }), finishedEvent(site, 52, 'failed', { error: 'b' })];
  const dead = finishedEvent(site, 53, 'dead', { error: 'c' });
  const done = finishedEvent(site, 54, 'done', {});
  const skipped = finishedEvent(site, 55, 'skipped', {});
  const rejected = ctx.events.recordRejected({ source: 'http_post', action: 'add', contactId: 56, params: {} }, 'nope');
  const agent = await adminAgent(site.app);

  const ask = await agent.get('/admin/events/replay-failed');
  assert.equal(ask.status, 200);
  assert.match(ask.text, /id="replay-count" data-count="3"/);
  assert.match(ask.text, /<form method="post" action="\/admin\/events\/replay-failed" id="replay-failed-form" data-confirm="[^"]+">/);
  assert.match(ask.text, /name="confirm" value="yes"/);

  // Without the confirmation the server does nothing.
  const unconfirmedForms: Array<Record<string, string>> = [{}, { confirm: 'no' }, { confirm: 'YES!' }];
  for (const fields of unconfirmedForms) {
    const unconfirmed = await submitForm(agent, '/admin/events/replay-failed', '/admin/events/replay-failed', fields);
    assert.equal(unconfirmed.status, 400);
    assert.equal(alertOf(unconfirmed.text), REPLAY_FAILED_CONFIRM_MESSAGE);
  }
  for (const id of failed) assert.equal(statusOf(ctx, id), 'failed');
  assert.equal(statusOf(ctx, dead), 'dead');

  const res = await submitForm(agent, '/admin/events/replay-failed', '/admin/events/replay-failed', { confirm: 'yes' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, '/admin/events?replayed=3');
  for (const id of [...failed, dead]) {
    const event = ctx.events.get(id)!;
    assert.equal(event.status, 'queued', `event ${id}`);
    assert.equal(event.attempts, 0);
    assert.equal(event.error, null);
  }
  assert.equal(statusOf(ctx, done), 'done');
  assert.equal(statusOf(ctx, skipped), 'skipped');
  assert.equal(statusOf(ctx, rejected), 'rejected');
  const list = await agent.get(res.headers.location!);
  assert.equal(noticeOf(list.text), '3 failed or dead events are queued to run again.');

  // Nothing left: the page says so, and a second confirmed post replays none.
  const again = await agent.get('/admin/events/replay-failed');
  assert.match(again.text, /data-count="0"/);
  assert.doesNotMatch(again.text, /id="replay-failed-form"/);
  const none = await submitForm(agent, '/admin/events', '/admin/events/replay-failed', { confirm: 'yes' });
  assert.equal(none.headers.location, '/admin/events?replayed=0');
  assert.equal(noticeOf((await agent.get('/admin/events?replayed=0')).text), 'There were no failed or dead events to replay.');
});

test('after a replay the attempts keep counting (1, then 2) and the member line names the member once', async () => {
  const site = await testSiteWithAdmin();
  const { ctx, app, clock } = site;
  // A member whose username is its email, as members created from Keap are.
  const member = await createMember(ctx, { email: 'nobody@example.com', username: 'nobody@example.com', role: 'member', password: MEMBER_PASSWORD, keapContactId: 91 });
  const id = finishedEvent(site, 91, 'failed', { error: 'Keap was down' });
  const agent = await adminAgent(app);
  const replay = await submitForm(agent, `/admin/events/${id}`, `/admin/events/${id}/replay`, {});
  assert.equal(replay.status, 303);
  const again = ctx.events.claimNext('w1', clock.now(), 60_000)!;
  assert.equal(again.id, id);
  ctx.events.finish(again, 'done', { result: 'updated member' });

  const html = (await agent.get(`/admin/events/${id}`)).text;
  assert.deepEqual([...html.matchAll(/<tr data-attempt="(\d+)" data-outcome="([a-z]+)">/g)].map((m) => [m[1], m[2]]), [['1', 'failed'], ['2', 'done']]);
  assert.match(html, /data-attempts="2">2 <span class="muted" data-retry-count="1">/, 'two runs, one since the replay started the retry count again');
  assert.match(html, new RegExp(`<dd id="event-member"><a href="/admin/members/${member.id}" id="member-link">nobody@example.com</a></dd>`), 'the email once, no username repeating it');
});
