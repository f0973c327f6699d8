/**
 * The two example plugins in examples/plugins/, loaded the way an operator would (PLUGINS_DIR), against the Keap
 * sandbox, an SMTP server and the worker: what the plugin guide promises they do, they do.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { adminCookie, formToken } from '../scripts/support/http-session.js';
import { SEED } from '../tools/keap-sandbox/index.js';
import { startHarness, type Harness } from './support/harness.js';

const EXAMPLES = fileURLToPath(new URL('../examples/plugins', import.meta.url));
const ADMIN = { email: 'owner@example.test', password: 'owner-password-123' };

async function withExamples(fn: (h: Harness, cookie: string) => Promise<void>): Promise<void> {
  const h = await startHarness({ env: { PLUGINS_DIR: EXAMPLES, ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password } });
  try {
    await fn(h, await adminCookie(h.server.url, ADMIN.email, ADMIN.password));
  } finally {
    await h.close();
  }
}

const page = async (h: Harness, cookie: string, path: string) => {
  const res = await fetch(`${h.server.url}${path}`, { headers: { cookie }, redirect: 'manual' });
  return { status: res.status, text: await res.text() };
};

test('both examples load and run, and the plugins page lists what they registered', () =>
  withExamples(async (h, cookie) => {
    const examples = h.server.ctx.plugins.list().filter((p) => !p.core);
    assert.deepEqual(examples.map((p) => [p.name, p.state]), [['member-journal', 'running'], ['username-from-name', 'running']]);
    const list = await page(h, cookie, '/admin/plugins');
    assert.equal(list.status, 200);
    for (const expected of ['member.created (durable)', 'member.username', 'journal_note', 'member-journal.prune', 'member_journal_entries', '/admin/plugins/member-journal', 'GET /plugins/member-journal/stats']) {
      assert.ok(list.text.includes(expected), `the plugins page lists ${expected}`);
    }
  }));

test('username-from-name: a new member from Keap is ada.lovelace; its settings change the next one; a clash falls back to the email', () =>
  withExamples(async (h, cookie) => {
    const { ctx } = h.server;
    assert.equal((await h.post({ wpf_action: 'add', contactId: String(SEED.contacts.ada) })).status, 200);
    await h.settle();
    assert.equal(ctx.members.findByContactId(SEED.contacts.ada)!.username, 'ada.lovelace');

    const form = await page(h, cookie, '/admin/plugins/username-from-name/settings');
    assert.equal(form.status, 200);
    const saved = await fetch(`${h.server.url}/admin/plugins/username-from-name/settings`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ _csrf: formToken(form.text), separator: '-' }),
    });
    assert.equal(saved.status, 303);
    assert.equal((await h.post({ wpf_action: 'add', contactId: String(SEED.contacts.grace) })).status, 200);
    await h.settle();
    assert.equal(ctx.members.findByContactId(SEED.contacts.grace)!.username, 'Grace-Hopper', 'separator "-", and the box left unticked: not lowercased');

    // Another Grace Hopper: the filter's name is taken, so memberhook falls back to the email.
    const twin = h.sandbox.state.addContact({ given_name: 'Grace', family_name: 'Hopper', email: 'grace.two@example.test' }).id;
    await h.post({ wpf_action: 'add', contactId: String(twin) });
    await h.settle();
    assert.equal(ctx.members.findByContactId(twin)!.username, 'grace.two@example.test');
  }));

test('member-journal: member events reach its journal through the outbox, Keap posts add notes, the admin page and route show them', () =>
  withExamples(async (h, cookie) => {
    const { ctx } = h.server;
    await h.post({ wpf_action: 'add', contactId: String(SEED.contacts.ada) });
    await h.settle();
    const ada = ctx.members.findByContactId(SEED.contacts.ada)!;
    const note = await h.post({ wpf_action: 'journal_note', contactId: String(SEED.contacts.ada), note: 'bought the <b>course</b>' });
    assert.equal(note.status, 200);
    const orphan = await h.post({ wpf_action: 'journal_note', contactId: '999999', note: 'nobody' });
    await h.settle();
    assert.equal(ctx.events.get(orphan.body.event_id as number)!.status, 'skipped');

    const entries = ctx.db.prepare<[], { member_id: number; event: string; detail: string }>('SELECT member_id, event, detail FROM member_journal_entries ORDER BY id').all();
    assert.deepEqual(
      entries.filter((e) => e.member_id === ada.id).map((e) => [e.event, e.detail]).sort(),
      [['created', 'ada@example.com'], ['note', 'bought the <b>course</b>'], ['tags', ada.tags.map((t) => `+${t.name}`).join(' ')]].sort(),
    );
    const deliveries = ctx.db.prepare<[], string>("SELECT DISTINCT status FROM events WHERE action = 'hook.deliver'").pluck().all();
    assert.deepEqual(deliveries, ['done']);
    assert.equal(ctx.db.prepare<[], string>("SELECT status FROM events WHERE action = 'member-journal.prune'").pluck().get(), 'done', 'the prune job ran at start');

    const journal = await page(h, cookie, '/admin/plugins/member-journal');
    assert.equal(journal.status, 200);
    assert.match(journal.text, /<h1>Member journal<\/h1>/);
    assert.match(journal.text, /bought the &lt;b&gt;course&lt;\/b&gt;/, 'escaped on the page');
    assert.match(journal.text, /aria-current="page">Journal</, 'its menu entry is the current one');
    const stats = await fetch(`${h.server.url}/plugins/member-journal/stats`);
    assert.deepEqual(await stats.json(), { entries: entries.length });
  }));
