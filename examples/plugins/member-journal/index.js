// An example memberhook plugin (plain JavaScript, an ES module). It shows most of the plugin API:
// durable hook handlers, its own table, a Keap HTTP Post action, a job, settings, an admin page and a route.
import { definePlugin, z } from 'memberhook/plugin';

const DAY_MS = 24 * 60 * 60 * 1000;

export default definePlugin({
  name: 'member-journal',
  version: '1.0.0',
  apiVersion: 1,
  description: 'A journal of what happens to members (kept even through a crash), an admin page to read it, and notes added by Keap HTTP Posts (wpf_action=journal_note).',

  async setup(api) {
    // Its own table, named with the plugin's prefix (member_journal_...). Each string is one migration, run once.
    await api.db.migrate([
      `CREATE TABLE member_journal_entries (
         id INTEGER PRIMARY KEY,
         member_id INTEGER,
         event TEXT NOT NULL,
         detail TEXT NOT NULL DEFAULT '',
         at TEXT NOT NULL
       )`,
      'CREATE INDEX member_journal_entries_member ON member_journal_entries (member_id, id)',
    ]);
    const entries = api.db.table('entries');

    // Settings, edited on a form the admin generates from this schema (Plugins → member-journal → Settings).
    const settings = api.settings.define(
      z.object({
        keepDays: z.number().int().min(1).max(3650).describe('How many days an entry is kept.'),
        recordLogins: z.boolean().describe('Also write an entry when a member logs in.'),
      }),
      { keepDays: 90, recordLogins: true },
    );

    const record = (memberId, event, detail = '') =>
      api.db.run(`INSERT INTO ${entries} (member_id, event, detail, at) VALUES (?, ?, ?, ?)`, [memberId, event, detail, new Date().toISOString()]);

    // Durable handlers: each action is recorded in the transaction that causes it and delivered as a job, so an
    // entry is written even if memberhook dies right after the member was saved (and retried if this fails).
    api.hooks.addAction('member.created', (member) => record(member.id, 'created', member.email), { durable: true });
    api.hooks.addAction('member.role_changed', (member, change) => record(member.id, 'role', `${change.from} → ${change.to}`), { durable: true });
    api.hooks.addAction(
      'member.tags_changed',
      (member, change) => record(member.id, 'tags', [...change.added.map((t) => `+${t.name || t.id}`), ...change.removed.map((t) => `-${t.name || t.id}`)].join(' ')),
      { durable: true },
    );
    api.hooks.addAction(
      'member.logged_in',
      async (member) => {
        if (settings.get().recordLogins) await record(member.id, 'logged in');
      },
      { durable: true },
    );

    // A new wpf_action for Keap's campaign HTTP Posts: contactId=~Contact.Id~, wpf_action=journal_note, note=...
    api.webhooks.addAction('journal_note', async (job) => {
      const member = api.members.findByContactId(job.params.contact_id);
      if (!member) return { status: 'skipped', result: `no member is linked to contact ${job.params.contact_id}` };
      const note = typeof job.params.note === 'string' ? job.params.note.slice(0, 200) : '';
      await record(member.id, 'note', note);
      return { status: 'done', result: `note added to member ${member.id}'s journal` };
    });

    // A job that removes old entries; queued at start and every day while the plugin runs.
    api.jobs.define({
      type: 'prune',
      params: z.object({}),
      dedupeKey: () => 'prune',
      async run() {
        const cutoff = new Date(Date.now() - settings.get().keepDays * DAY_MS).toISOString();
        const { changes } = await api.db.run(`DELETE FROM ${entries} WHERE at < ?`, [cutoff]);
        return { status: 'done', result: `${changes} old journal entries removed` };
      },
    });
    await api.jobs.enqueue('prune', {});
    const daily = setInterval(() => void api.jobs.enqueue('prune', {}).catch((err) => api.logger.warn({ err }, 'could not queue the prune job')), DAY_MS);
    daily.unref();
    api.onStop(() => clearInterval(daily));

    // An admin page at /admin/plugins/member-journal, in the top navigation. The host checks the admin's login.
    const { html } = api.admin;
    api.admin.addPage({
      path: '',
      title: 'Member journal',
      menu: { label: 'Journal', order: 70 },
      async handler(_req, res) {
        const rows = await api.db.all(`SELECT id, member_id, event, detail, at FROM ${entries} ORDER BY id DESC LIMIT 50`);
        api.admin.render(res, {
          title: 'Member journal',
          html: html`
            <h1>Member journal</h1>
            <section class="panel">
              ${rows.length === 0
                ? html`<p class="muted">Nothing has happened to members since the journal was started.</p>`
                : html`<div class="table-wrap"><table>
                    <thead><tr><th>When</th><th>Member</th><th>What</th><th>Detail</th></tr></thead>
                    <tbody>${rows.map((r) => html`<tr data-entry="${r.id}"><td class="nowrap">${r.at.slice(0, 16).replace('T', ' ')} UTC</td><td><a href="/admin/members/${r.member_id}">#${r.member_id}</a></td><td>${r.event}</td><td>${r.detail}</td></tr>`)}</tbody>
                  </table></div>`}
              <p class="hint">Entries are kept ${settings.get().keepDays} days. <a href="/admin/plugins/member-journal/settings">Settings</a></p>
            </section>`,
        });
      },
    });

    // A public route at /plugins/member-journal/stats: how many entries there are (no member data).
    api.router.get('/stats', async (_req, res) => {
      const row = await api.db.get(`SELECT count(*) AS entries FROM ${entries}`);
      res.json({ entries: row.entries });
    });
  },
});
