import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { startKeapSandbox, type KeapSandbox, type RecordedRequest } from '../tools/keap-sandbox/index.js';
import { SEED } from '../tools/keap-sandbox/seed.js';
import { verifyPassword } from '../src/features/members/passwords.js';
import { openDatabaseReadOnly, startChildServer, waitFor, type ChildServer } from './support/child-server.js';
import { parseMessage, type ReceivedMessage } from './support/smtp.js';
import { tempDataDir, NO_PLUGINS_DIR } from './support/temp.js';

/*
 * Crash safety, proven with SIGKILL: memberhook runs as its own process against the Keap sandbox and a real SMTP
 * server (both here, on loopback), gets a burst of Keap HTTP Posts, and is killed with no warning at a chosen
 * moment. It is then started again on the same data folder, Keap resends what was never acknowledged (as Keap
 * does until it sees a 200), and once the queue is empty every contact must have come out exactly as if nothing
 * had happened: one member, one password (the one in Keap, the one in the email, the one that logs in), and one
 * welcome email, or two identical ones only for a job the crash cut off after the mail server accepted it.
 *
 * CRASH_ROUNDS=5 repeats every kill point five times and CRASH_CONTACTS=60 makes each burst bigger (longer runs by
 * hand); CI runs each kill point once with 24 contacts (39 posts).
 */

const ROUNDS = Math.max(1, Number(process.env.CRASH_ROUNDS ?? 1));
const CONTACTS_PER_ROUND = Math.max(4, Number(process.env.CRASH_CONTACTS ?? 24));
/** Every third contact is posted twice more (Keap campaigns repeat themselves; Keap resends on a slow answer). */
const DUPLICATED_EVERY = 3;
const ACCESS_KEY = 'crash-test-access-key-0123456789-abcdefghijk';
const KEAP_KEY = 'sandbox-api-key';
const PASSWORD_FIELD = SEED.fields.password;
const WELCOME_ID = /^<welcome-(\d+)@memberhook>$/;

interface AcceptedMessage extends ReceivedMessage {
  messageId: string;
  /** Date.now() just before the 250 went out. */
  acceptedAt: number;
}

interface RecordingSmtp {
  url: string;
  messages: AcceptedMessage[];
  /** Called right after a message is accepted (its 250 written), with its 1-based number. */
  onAccepted: ((message: AcceptedMessage, n: number) => void) | undefined;
  /** Asked when a message's data has arrived: 'hold' keeps the answer back (the client waits, as for a slow server). */
  onData: ((n: number) => 'accept' | 'hold') | undefined;
  /** Recipients of messages whose data arrived and whose answer was held: never accepted, never recorded. */
  heldFor: string[];
  close(): Promise<void>;
}

/**
 * A real SMTP server that records when it accepts each message, and lets a test act at that exact moment.
 * A message counts as delivered only once its 250 is sent, as for a real mail server.
 */
async function startRecordingSmtp(): Promise<RecordingSmtp> {
  let seen = 0;
  const recorder: RecordingSmtp = {
    url: '',
    messages: [],
    onAccepted: undefined,
    onData: undefined,
    heldFor: [],
    close: async () => {},
  };
  const server = new SMTPServer({
    logger: false,
    secure: false,
    disabledCommands: ['STARTTLS', 'AUTH'],
    authOptional: true,
    closeTimeout: 200,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', (err) => callback(err));
      stream.on('end', () => {
        const n = ++seen;
        if (recorder.onData?.(n) === 'hold') {
          // No answer: the client is left waiting; if it dies, the message was never accepted.
          recorder.heldFor.push(...session.envelope.rcptTo.map((rcpt) => rcpt.address));
          return;
        }
        const raw = Buffer.concat(chunks).toString('utf8');
        const parsed = parseMessage(raw);
        const message: AcceptedMessage = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
          raw,
          ...parsed,
          messageId: parsed.headers.get('message-id') ?? '',
          acceptedAt: Date.now(),
        };
        callback(null, 'Queued');
        recorder.messages.push(message);
        recorder.onAccepted?.(message, recorder.messages.length);
      });
    },
  });
  // A connection cut by the kill is reported as a server 'error' (ECONNRESET); it is what these tests do on purpose.
  server.on('error', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  recorder.url = `smtp://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
  recorder.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return recorder;
}

/** Calls `fn` as each request reaches the sandbox (before it is answered), from inside the sandbox's own handling. */
function onSandboxRequest(sandbox: KeapSandbox, fn: (request: RecordedRequest) => void): () => void {
  const requests = sandbox.state.requests;
  const push = requests.push;
  requests.push = function (...items: RecordedRequest[]) {
    const n = push.apply(this, items);
    for (const item of items) fn(item);
    return n;
  };
  return () => {
    requests.push = push;
  };
}

interface Post {
  contactId: number;
  /** The event id of the 200 answer; undefined until acknowledged. */
  eventId?: number;
  /** The server (1 = before the crash, 2 = after) that acknowledged it. */
  ackedBy?: 1 | 2;
}

async function sendPost(url: string, post: Post): Promise<{ ok: boolean; eventId?: number; status?: number }> {
  try {
    const res = await fetch(`${url}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ contactId: String(post.contactId), wpf_action: 'add', send_notification: 'true', access_key: ACCESS_KEY }),
    });
    const body = (await res.json()) as { ok?: boolean; event_id?: number };
    return res.status >= 200 && res.status < 300 && body.ok === true ? { ok: true, eventId: body.event_id!, status: res.status } : { ok: false, status: res.status };
  } catch {
    return { ok: false }; // the server died with the request in flight: not acknowledged
  }
}

/** Sends the posts `parallel` at a time; stops taking new ones once `stopped()` says so. */
async function sendBurst(url: string, posts: Post[], server: 1 | 2, opts: { parallel: number; stopped?: () => boolean; onAck?: () => void }): Promise<void> {
  let next = 0;
  const runner = async () => {
    while (next < posts.length && !opts.stopped?.()) {
      const post = posts[next++]!;
      if (post.ackedBy) continue;
      const answer = await sendPost(url, post);
      if (answer.ok) {
        post.eventId = answer.eventId!;
        post.ackedBy = server;
        opts.onAck?.();
      } else if (server === 2) {
        assert.fail(`post for contact ${post.contactId} was refused after the restart (status ${answer.status ?? 'none'})`);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.parallel }, runner));
}

interface KillPoint {
  name: string;
  /** Arms the kill; `kill(why)` sends SIGKILL at once. */
  arm(env: { sandbox: KeapSandbox; smtp: RecordingSmtp; kill: (why: string) => void }): void;
  /** Checks that the crash hit what it was aimed at (so a pass is not a crash that missed). */
  hit?(facts: { killedBy: string; smtp: RecordingSmtp; duplicateEmails: number; runningAtKill: Record<string, number>; welcomeRunningAtKill: ReadonlySet<number> }): void;
}

/** The message the mail server had just accepted when the SMTP kill point struck. */
let acceptedAtKill: AcceptedMessage | undefined;

const KILL_POINTS: KillPoint[] = [
  {
    name: 'during the burst of posts (some acknowledged, some in flight)',
    arm: () => {}, // the burst itself kills, after 12 acknowledgements (see runScenario)
    hit: ({ killedBy }) => assert.equal(killedBy, 'burst'),
  },
  {
    name: 'while jobs run and Keap calls are in flight',
    arm: ({ sandbox, kill }) => {
      let gets = 0;
      onSandboxRequest(sandbox, (r) => {
        if (r.method === 'GET' && /^\/crm\/rest\/v2\/contacts\/\d+$/.test(r.path) && ++gets === 10) kill('keap GET');
      });
    },
    hit: ({ runningAtKill }) => assert.ok((runningAtKill.add ?? 0) >= 1, 'add jobs were running'),
  },
  {
    name: 'while password write-back PATCHes are in flight',
    arm: ({ sandbox, kill }) => {
      let patches = 0;
      onSandboxRequest(sandbox, (r) => {
        if (r.method === 'PATCH' && ++patches === 4) kill('keap PATCH');
      });
    },
    hit: ({ runningAtKill }) => assert.ok((runningAtKill.keap_password_writeback ?? 0) >= 1, 'a write-back job was running'),
  },
  {
    name: 'while welcome emails are being sent (one accepted the instant before, one in the mail server awaiting its answer)',
    arm: ({ smtp, kill }) => {
      // The 4th message's answer is held (the sender waits, as on a slow server); the kill comes the instant the
      // mail server accepts the next one on another connection, before memberhook can read that 250.
      let holding = false;
      let heldAt = 0;
      acceptedAtKill = undefined;
      smtp.onData = (n) => {
        if (n !== 3) return 'accept';
        holding = true;
        heldAt = smtp.messages.length;
        setTimeout(() => kill('held SMTP answer'), 3_000).unref(); // should no other message come, the held one alone is the kill point
        return 'hold';
      };
      smtp.onAccepted = (m, n) => {
        if (holding && n > heldAt) {
          acceptedAtKill = m;
          kill('SMTP 250');
        }
      };
    },
    hit: ({ killedBy, smtp, duplicateEmails, welcomeRunningAtKill }) => {
      assert.equal(smtp.heldFor.length, 1, 'one message was caught with its answer held');
      // Killed right after writing a 250. If memberhook had no time to read it (its job was still running when the
      // process died), that email must come again. The signal reaches the other process a moment after the 250 is
      // written, and memberhook sometimes reads the 250 and records its job done first: then once is right.
      const jobId = Number(WELCOME_ID.exec(acceptedAtKill?.messageId ?? '')?.[1]);
      if (killedBy === 'SMTP 250' && welcomeRunningAtKill.has(jobId)) assert.ok(duplicateEmails >= 1, 'the email accepted at the kill was sent again');
    },
  },
];

interface RoundReport {
  killPoint: string;
  round: number;
  killedBy: string;
  posts: number;
  ackedBeforeKill: number;
  /** Jobs running when the process died, by action. */
  runningAtKill: Record<string, number>;
  members: number;
  emails: number;
  duplicateEmails: number;
  duplicatePatches: number;
  /** ms from a message's 250 to its job's `done` commit, for messages sent by a process that lived on. */
  windowsMs: number[];
  ms: { total: number; firstStart: number; toKill: number; restart: number; recovery: number };
}

const reports: RoundReport[] = [];

after(() => {
  if (reports.length === 0) return;
  const lines = ['crash-safety summary:'];
  for (const r of reports) {
    lines.push(
      `  ${r.killPoint} #${r.round} (killed at: ${r.killedBy}): ${r.posts} posts (${r.ackedBeforeKill} acked before the kill), running at kill ${JSON.stringify(r.runningAtKill)}, ` +
        `${r.members} members, ${r.emails} emails, ${r.duplicateEmails} duplicate emails, ${r.duplicatePatches} repeated PATCHes; ` +
        `ms: total ${r.ms.total}, start ${r.ms.firstStart}, to kill ${r.ms.toKill}, restart ${r.ms.restart}, recovery ${r.ms.recovery}`,
    );
  }
  const windows = reports.flatMap((r) => r.windowsMs).sort((a, b) => a - b);
  if (windows.length) {
    const q = (p: number) => windows[Math.min(windows.length - 1, Math.floor(p * windows.length))]!;
    lines.push(`  SMTP 250 -> job done commit over ${windows.length} emails: min ${windows[0]} ms, median ${q(0.5)} ms, p95 ${q(0.95)} ms, p99 ${q(0.99)} ms, max ${windows.at(-1)} ms`);
  }
  console.log(lines.join('\n'));
});

async function runScenario(killPoint: KillPoint, index: number, round: number): Promise<RoundReport> {
  const t0 = Date.now();
  const sandbox = await startKeapSandbox({ apiKeys: [KEAP_KEY], latencyMs: 10, limits: { perSecond: 100_000, perMinute: 1_000_000, perDay: 10_000_000 } });
  const smtp = await startRecordingSmtp();
  const dataDir = tempDataDir('memberhook-crash-');
  let server: ChildServer | undefined;
  try {
    const contacts = Array.from({ length: CONTACTS_PER_ROUND }, (_, i) =>
      sandbox.state.addContact({ given_name: 'Crash', family_name: `K${index}R${round}N${i}`, email: `crash-${index}-${round}-${i}@example.test` }),
    );
    const emailOf = new Map(contacts.map((c) => [c.id, c.email_addresses[0]!.email]));
    // Every contact once; every third one twice more: right away (folded into its queued job, or run after it)
    // and again a few contacts later (when its member may exist already).
    const posts: Post[] = [];
    contacts.forEach((c, i) => {
      posts.push({ contactId: c.id });
      if (i % DUPLICATED_EVERY === 0) posts.push({ contactId: c.id });
      if (i >= DUPLICATED_EVERY && i % DUPLICATED_EVERY === 0) posts.push({ contactId: contacts[i - DUPLICATED_EVERY]!.id });
    });

    const env = {
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      PLUGINS_DIR: NO_PLUGINS_DIR,
      ACCESS_KEY,
      KEAP_API_URL: sandbox.url,
      KEAP_API_KEY: KEAP_KEY,
      KEAP_PASSWORD_FIELD: 'Password',
      KEAP_RATE_PER_SECOND: '1000',
      KEAP_RATE_PER_MINUTE: '60000',
      SMTP_URL: smtp.url,
      MAIL_FROM: 'Site <site@example.test>',
      PUBLIC_URL: 'http://members.example.test',
      JOB_RETRY_BASE_MS: '50',
      WORKER_CONCURRENCY: '4',
      LOG_LEVEL: 'error',
    };

    // --- first life: the burst, and the kill -----------------------------------------------------------------
    server = await startChildServer(env);
    const first = server;
    const tStarted = Date.now();
    let killedAt: number | undefined;
    let killedBy = '';
    const kill = (why: string) => {
      if (killedAt !== undefined) return;
      killedAt = Date.now();
      killedBy = why;
      first.process.kill('SIGKILL');
    };
    let acks = 0;
    killPoint.arm({ sandbox, smtp, kill });
    const killDuringBurst = index === 0;
    await sendBurst(first.url, posts, 1, {
      parallel: 6,
      stopped: () => killedAt !== undefined,
      onAck: () => {
        acks += 1;
        if (killDuringBurst && acks === 12) kill('burst');
      },
    });
    await Promise.race([
      first.exited,
      waitFor(`the kill point "${killPoint.name}"`, () => killedAt !== undefined, 30_000).then(() => first.exited),
    ]);
    const exit = await first.exited;
    assert.equal(exit.signal, 'SIGKILL', `memberhook should have been killed, not exit by itself: ${first.output()}`);
    const tKilled = Date.now();
    const ackedBeforeKill = posts.filter((p) => p.ackedBy === 1).length;
    if (killDuringBurst) assert.ok(ackedBeforeKill < posts.length, 'the kill came before every post was acknowledged');

    // What the dead process left behind, read before anything touches the folder again.
    const snapshot = openDatabaseReadOnly(dataDir);
    const running = snapshot
      .prepare<[], { id: number; action: string; params: string }>("SELECT id, action, params FROM events WHERE status = 'processing'")
      .all();
    const acknowledgedRows = snapshot.prepare<[], { id: number }>('SELECT id FROM events').all().map((r) => r.id);
    snapshot.close();
    for (const post of posts.filter((p) => p.ackedBy === 1)) {
      assert.ok(acknowledgedRows.includes(post.eventId!), `acknowledged event ${post.eventId} is in the database after the kill`);
    }
    const runningAtKill: Record<string, number> = {};
    for (const job of running) runningAtKill[job.action] = (runningAtKill[job.action] ?? 0) + 1;
    const welcomeRunningAtKill = new Set(running.filter((j) => j.action === 'welcome_email').map((j) => j.id));
    const writeBackRunningAtKill = new Set(running.filter((j) => j.action === 'keap_password_writeback').map((j) => Number(JSON.parse(j.params).member_id)));
    smtp.onAccepted = undefined;
    smtp.onData = undefined;

    // --- second life: same data folder; Keap resends whatever was not acknowledged --------------------------------
    const tRestartBegan = Date.now();
    server = await startChildServer(env);
    const tRestarted = Date.now();
    await sendBurst(server.url, posts, 2, { parallel: 6 });
    const db = openDatabaseReadOnly(dataDir);
    try {
      const unfinished = db.prepare("SELECT count(*) FROM events WHERE status IN ('queued', 'processing')").pluck();
      await waitFor('the queue to empty after the restart', () => unfinished.get() === 0, 30_000, 20);
      const tRecovered = Date.now();

      // --- the checks ------------------------------------------------------------------------------------------
      const statuses = Object.fromEntries(db.prepare<[], { status: string; n: number }>('SELECT status, count(*) AS n FROM events GROUP BY status').all().map((r) => [r.status, r.n]));
      assert.deepEqual(Object.keys(statuses).filter((s) => s !== 'done' && s !== 'skipped'), [], `every job done: ${JSON.stringify(statuses)}`);
      for (const post of posts) {
        const row = db.prepare<[number], { contact_id: number; status: string }>('SELECT contact_id, status FROM events WHERE id = ?').get(post.eventId!);
        assert.ok(row, `acknowledged event ${post.eventId} exists`);
        assert.equal(row.contact_id, post.contactId);
      }
      assert.equal(db.prepare('SELECT count(*) FROM pending_passwords').pluck().get(), 0, 'no plain password left waiting');

      const memberRows = db.prepare<[], { id: number; email: string; keap_contact_id: number; password_hash: string }>(
        'SELECT id, email, keap_contact_id, password_hash FROM members WHERE keap_contact_id IS NOT NULL',
      ).all();
      const welcomeJobs = db.prepare<[], { id: number; params: string; updated_at: string }>("SELECT id, params, updated_at FROM events WHERE action = 'welcome_email'").all();
      const welcomeJobOf = new Map<number, { id: number; doneAt: number }[]>();
      for (const job of welcomeJobs) {
        const memberId = Number(JSON.parse(job.params).member_id);
        welcomeJobOf.set(memberId, [...(welcomeJobOf.get(memberId) ?? []), { id: job.id, doneAt: Date.parse(job.updated_at) }]);
      }
      const crashedAttempts = new Set(db.prepare<[], { event_id: number }>("SELECT event_id FROM event_attempts WHERE outcome = 'crashed'").all().map((r) => r.event_id));
      const allPatches = sandbox.state.requests.filter((r) => r.method === 'PATCH');
      let duplicateEmails = 0;
      let duplicatePatches = 0;
      const windowsMs: number[] = [];
      const logins: Promise<void>[] = [];
      assert.equal(memberRows.length, contacts.length, 'one member per contact, no more');

      for (const contact of contacts) {
        const email = emailOf.get(contact.id)!;
        const members = memberRows.filter((m) => m.keap_contact_id === contact.id);
        assert.equal(members.length, 1, `contact ${contact.id}: exactly one member by contact id`);
        const member = members[0]!;
        assert.equal(memberRows.filter((m) => m.email.toLowerCase() === email.toLowerCase()).length, 1, `contact ${contact.id}: exactly one member by email`);

        // One password: in Keap's field, in every PATCH ever sent for this contact, and it is the one that logs in.
        const password = sandbox.state.customFieldValue(contact.id, PASSWORD_FIELD);
        assert.equal(typeof password, 'string', `contact ${contact.id}: a password was written back to Keap`);
        const patches = allPatches.filter((r) => r.path === `/crm/rest/v1/contacts/${contact.id}`);
        const written = patches.filter((r) => r.status >= 200 && r.status < 300);
        assert.ok(written.length >= 1, `contact ${contact.id}: a successful write-back PATCH`);
        for (const patch of patches) {
          if (patch.body === undefined) continue; // cut off before its body arrived: never applied
          const values = (patch.body as { custom_fields: Array<{ id: number; content: unknown }> }).custom_fields.filter((f) => String(f.id) === String(PASSWORD_FIELD)).map((f) => f.content);
          assert.deepEqual(values, [password], `contact ${contact.id}: every PATCH carries the same password`);
        }
        if (written.length > 1) {
          duplicatePatches += written.length - 1;
          assert.equal(written.length, 2, `contact ${contact.id}: at most one repeated write-back`);
          assert.ok(writeBackRunningAtKill.has(member.id), `contact ${contact.id}: a write-back is repeated only when the crash cut it off`);
        }
        logins.push(verifyPassword(password as string, member.password_hash).then((ok) => assert.equal(ok, true, `contact ${contact.id}: Keap's password logs in`)));

        // One welcome job; its email once, or twice (same Message-ID, same password) if the crash hit that job after the 250.
        const jobs = welcomeJobOf.get(member.id) ?? [];
        assert.equal(jobs.length, 1, `contact ${contact.id}: one welcome job`);
        const job = jobs[0]!;
        const mails = smtp.messages.filter((m) => m.to.includes(email));
        assert.ok(mails.length >= 1, `contact ${contact.id}: a welcome email arrived`);
        for (const mail of mails) {
          assert.equal(WELCOME_ID.exec(mail.messageId)?.[1], String(job.id), `contact ${contact.id}: Message-ID names the welcome job`);
          assert.ok(mail.text.includes(password as string), `contact ${contact.id}: the email carries Keap's password`);
        }
        if (mails.length > 1) {
          duplicateEmails += mails.length - 1;
          assert.equal(mails.length, 2, `contact ${contact.id}: at most one repeated welcome email`);
          assert.ok(welcomeRunningAtKill.has(job.id), `contact ${contact.id}: a welcome email is repeated only when the crash cut its job off`);
          assert.ok(crashedAttempts.has(job.id), `contact ${contact.id}: the repeated job shows its crashed attempt`);
          // The first copy came from the killed process: accepted before the kill, or just after it when the whole
          // message was already on the wire (the mail server cannot tell that the sender has died).
          assert.ok(mails[0]!.acceptedAt < tRestartBegan, `contact ${contact.id}: the first copy came from the killed process`);
          assert.ok(mails[1]!.acceptedAt >= tRestartBegan, `contact ${contact.id}: the repeat came after the restart`);
          const same = (m: AcceptedMessage) => ({ messageId: m.messageId, to: m.to, subject: m.subject, text: m.text, html: m.html });
          assert.deepEqual(same(mails[1]!), same(mails[0]!), `contact ${contact.id}: the repeat is the same message`);
        } else {
          // Sent once, by a process that went on to record it: the double-send window, measured.
          windowsMs.push(job.doneAt - mails[0]!.acceptedAt);
        }
      }
      await Promise.all(logins);
      killPoint.hit?.({ killedBy, smtp, duplicateEmails, runningAtKill, welcomeRunningAtKill });
      for (const email of smtp.heldFor) {
        assert.equal(smtp.messages.filter((m) => m.to.includes(email)).length, 1, `${email}: the email the crash caught unanswered was sent again, once`);
      }
      assert.equal(smtp.messages.length - duplicateEmails, contacts.length, 'one welcome email per member, besides the repeats above');
      assert.ok(duplicateEmails <= welcomeRunningAtKill.size, 'no more repeats than welcome jobs the crash cut off');

      // One member logs in through the login form with the password Keap holds.
      const sample = contacts[Math.floor(contacts.length / 2)]!;
      const loginPage = await fetch(`${server.url}/login`);
      const cookie = loginPage.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
      const csrf = /name="_csrf" value="([^"]+)"/.exec(await loginPage.text())?.[1] ?? '';
      const login = await fetch(`${server.url}/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
        body: new URLSearchParams({ _csrf: csrf, login: emailOf.get(sample.id)!, password: String(sandbox.state.customFieldValue(sample.id, PASSWORD_FIELD)) }),
      });
      assert.equal(login.status, 303, 'the member logs in with the password from Keap');
      assert.equal(login.headers.get('location'), '/account');

      db.close();
      await server.stop();
      const closed = openDatabaseReadOnly(dataDir);
      assert.equal(closed.pragma('integrity_check', { simple: true }), 'ok');
      assert.equal(closed.prepare("SELECT count(*) FROM events WHERE status = 'processing'").pluck().get(), 0, 'no job left processing');
      closed.close();

      return {
        killPoint: killPoint.name,
        round,
        killedBy,
        posts: posts.length,
        ackedBeforeKill,
        runningAtKill,
        members: memberRows.length,
        emails: smtp.messages.length,
        duplicateEmails,
        duplicatePatches,
        windowsMs,
        ms: { total: Date.now() - t0, firstStart: tStarted - t0, toKill: tKilled - tStarted, restart: tRestarted - tKilled, recovery: tRecovered - tRestarted },
      };
    } finally {
      if (db.open) db.close();
    }
  } finally {
    if (server && server.process.exitCode === null && server.process.signalCode === null) await server.killHard();
    await smtp.close();
    await sandbox.close();
  }
}

KILL_POINTS.forEach((killPoint, index) => {
  test(`SIGKILL ${killPoint.name}: after a restart every acknowledged post has one member, one password and its welcome email`, async (t) => {
    for (let round = 1; round <= ROUNDS; round++) {
      const report = await runScenario(killPoint, index, round);
      reports.push(report);
      t.diagnostic(
        `round ${round}: ${report.ackedBeforeKill}/${report.posts} acked before the kill, running at kill ${JSON.stringify(report.runningAtKill)}, ` +
          `${report.duplicateEmails} duplicate emails, ${report.duplicatePatches} repeated PATCHes, ${report.ms.total} ms`,
      );
    }
  });
});
