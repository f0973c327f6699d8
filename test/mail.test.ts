import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { createMailer, MailError, type Mailer } from '../src/core/mail.js';
import { ViewRenderer } from '../src/core/views.js';
import { renderWelcomeEmail, type WelcomeEmailData } from '../src/features/welcome-email/template.js';
import { captureLogs } from './support/logs.js';
import { startSmtpServer, parseMessage } from './support/smtp.js';
import { tempDataDir } from './support/temp.js';

const FROM = 'Example Members <no-reply@members.example.test>';

/** Closes the mailer before the server, so the pooled connection does not hold the server's close open. */
function closeLater(mailer: Mailer, server?: { close(): Promise<void> }) {
  after(async () => {
    mailer.close();
    await server?.close();
  });
}

describe('SMTP mailer', () => {
  test('a message arrives at the SMTP server with its sender, recipient, subject, text and HTML', async () => {
    const server = await startSmtpServer();
    const { logger, lines, text: logText } = captureLogs();
    const mailer = createMailer({ smtpUrl: server.url, from: FROM, outboxDir: tempDataDir(), logger, timeoutMs: 5000 });
    closeLater(mailer, server);
    assert.equal(mailer.kind, 'smtp');

    const sent = await mailer.send({
      to: 'ada@example.test',
      subject: 'Welcome to Café & Co',
      text: 'Your password is Sekret-Body-123 = yours\nSee you.',
      html: '<p>Your password is <b>Sekret-Body-123</b></p>',
      messageId: 'welcome-42',
    });

    assert.equal(sent.destination, 'smtp');
    assert.equal(sent.messageId, '<welcome-42@members.example.test>');
    assert.equal(server.messages.length, 1);
    const message = server.messages[0]!;
    assert.equal(message.from, 'no-reply@members.example.test');
    assert.deepEqual(message.to, ['ada@example.test']);
    assert.equal(message.headers.get('from'), FROM);
    assert.equal(message.headers.get('message-id'), '<welcome-42@members.example.test>');
    assert.equal(message.subject, 'Welcome to Café & Co');
    assert.equal(message.text, 'Your password is Sekret-Body-123 = yours\nSee you.');
    assert.equal(message.html, '<p>Your password is <b>Sekret-Body-123</b></p>');

    const line = lines().find((entry) => entry.msg === 'mail sent');
    assert.ok(line, 'a "mail sent" line is logged');
    assert.equal(line.level, 30);
    assert.equal(line.kind, 'smtp');
    assert.equal(line.to, 'ada@example.test');
    assert.equal(line.subject, 'Welcome to Café & Co');
    assert.equal(line.messageId, '<welcome-42@members.example.test>');
    assert.ok(!logText().includes('Sekret-Body-123'), 'the body is never logged');
  });

  test('a recipient string nodemailer would read as a list is refused and reaches nobody; an address object goes to one', async () => {
    const server = await startSmtpServer();
    const { logger, lines } = captureLogs();
    const mailer = createMailer({ smtpUrl: server.url, from: FROM, outboxDir: tempDataDir(), logger, timeoutMs: 5000 });
    closeLater(mailer, server);
    for (const to of ['victim@example.com, attacker@evil.test', 'victim@example.com;attacker@evil.test', 'Victim <victim@example.com>', '', { address: 'victim@example.com, attacker@evil.test' }]) {
      await assert.rejects(
        mailer.send({ to, subject: 'Welcome', text: 'Your password is Secret-1' }),
        (err: unknown) => err instanceof MailError && !err.transient && /Not one valid email address/.test(err.message),
        JSON.stringify(to),
      );
    }
    assert.equal(server.messages.length, 0, 'nothing reached either address');
    assert.ok(lines().some((line) => line.msg === 'mail not sent'), 'each refusal is logged');

    await mailer.send({ to: { name: 'Lovelace, Ada', address: 'ada@example.test' }, subject: 'Hi', text: 'Hello' });
    await mailer.send({ to: ' grace@example.test ', subject: 'Hi', text: 'Hello' });
    assert.deepEqual(server.messages.map((m) => m.to), [['ada@example.test'], ['grace@example.test']], 'one recipient each, the comma in a name splitting nothing');
    assert.equal(server.messages[0]!.headers.get('to'), '"Lovelace, Ada" <ada@example.test>');
  });

  test('a 451 answer rejects the send, and a later send goes through', async () => {
    const server = await startSmtpServer({ failNext: 1 });
    const { logger } = captureLogs();
    const mailer = createMailer({ smtpUrl: server.url, from: FROM, outboxDir: tempDataDir(), logger, timeoutMs: 5000 });
    closeLater(mailer, server);

    await assert.rejects(mailer.send({ to: 'ada@example.test', subject: 'first', text: 'one' }), (err: unknown) => {
      assert.ok(err instanceof MailError);
      assert.equal(err.responseCode, 451);
      assert.equal(err.transient, true);
      assert.match(err.message, /451/);
      return true;
    });
    assert.equal(server.messages.length, 0);

    const sent = await mailer.send({ to: 'ada@example.test', subject: 'second', text: 'two' });
    assert.equal(sent.destination, 'smtp');
    assert.equal(server.messages.length, 1);
    assert.equal(server.messages[0]!.subject, 'second');

    server.failNext(1);
    await assert.rejects(mailer.send({ to: 'ada@example.test', subject: 'third', text: 'three' }), MailError);
    assert.equal(server.messages.length, 1);
  });

  test('a rejected login gives an error that never shows the SMTP password', async () => {
    const password = 'Wr0ng-Pa55word-XYZ';
    const server = await startSmtpServer({ user: 'mailer', pass: 'the-right-password' });
    const url = new URL(server.url);
    url.password = password;
    const { logger, text: logText } = captureLogs();
    const mailer = createMailer({ smtpUrl: url.toString(), from: FROM, outboxDir: tempDataDir(), logger, timeoutMs: 5000 });
    closeLater(mailer, server);

    let caught: unknown;
    await assert.rejects(
      mailer.send({ to: 'ada@example.test', subject: 'hello', text: 'body' }).catch((err: unknown) => {
        caught = err;
        throw err;
      }),
    );
    assert.ok(caught instanceof MailError);
    assert.equal(caught.code, 'EAUTH');
    assert.equal(caught.responseCode, 535);
    assert.equal(caught.transient, false);
    assert.match(caught.message, /535/);

    const forms = [password, encodeURIComponent(password), Buffer.from(password).toString('base64'), Buffer.from(`\0mailer\0${password}`).toString('base64')];
    const everything = [caught.message, String(caught), caught.stack ?? '', JSON.stringify(caught), inspect(caught, { depth: 5, showHidden: true }), logText()].join('\n');
    for (const form of forms) assert.ok(!everything.includes(form), `the error and logs do not contain ${JSON.stringify(form)}`);
    assert.equal(server.messages.length, 0);
  });

  test('a password the server quotes back in its answer is blanked out of the error', async () => {
    const password = 'Echoed-Secret-777';
    const server = await startSmtpServer({ user: 'mailer', pass: 'the-right-password', echoFailedLogin: true });
    const url = new URL(server.url);
    url.password = password;
    const { logger, text: logText } = captureLogs();
    const mailer = createMailer({ smtpUrl: url.toString(), from: FROM, outboxDir: tempDataDir(), logger, timeoutMs: 5000 });
    closeLater(mailer, server);
    await assert.rejects(mailer.send({ to: 'ada@example.test', subject: 'hello', text: 'body' }), (err: unknown) => {
      assert.ok(err instanceof MailError);
      assert.match(err.message, /Authentication credentials invalid for mailer:\[redacted\]/);
      assert.ok(!inspect(err, { depth: 5, showHidden: true }).includes(password));
      return true;
    });
    assert.ok(!logText().includes(password));
  });

  test('an unreachable server is a transient error that does not show the password', async () => {
    const password = 'Unreachable-Secret-555';
    const { logger } = captureLogs();
    const mailer = createMailer({ smtpUrl: `smtp://user:${password}@127.0.0.1:1`, from: FROM, outboxDir: tempDataDir(), logger, timeoutMs: 2000 });
    closeLater(mailer);
    await assert.rejects(mailer.send({ to: 'ada@example.test', subject: 'hello', text: 'body' }), (err: unknown) => {
      assert.ok(err instanceof MailError);
      assert.equal(err.transient, true, 'a refused connection is worth retrying');
      assert.ok(!inspect(err, { depth: 5, showHidden: true }).includes(password));
      return true;
    });
  });
});

describe('outbox mailer', () => {
  test('without an SMTP URL each message is written as one complete .eml file', async () => {
    const outboxDir = join(tempDataDir(), 'outbox');
    const { logger, lines, text: logText } = captureLogs();
    const mailer = createMailer({ from: FROM, outboxDir, logger });
    closeLater(mailer);
    assert.equal(mailer.kind, 'outbox');

    const first = await mailer.send({
      to: 'ada@example.test',
      subject: 'Welcome to Café',
      text: 'Your password: Outbox-Secret-1\nLogin: https://members.example.test/login',
      html: '<p>Your password: <code>Outbox-Secret-1</code></p>',
      messageId: '<welcome-7@members.example.test>',
    });
    const second = await mailer.send({ to: 'bob@example.test', subject: 'Second', text: 'Hi Bob' });

    const files = readdirSync(outboxDir).sort();
    assert.equal(files.length, 2, `two files and no leftovers: ${files.join(', ')}`);
    for (const file of files) assert.match(file, /^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}Z-[A-Za-z0-9._-]+\.eml$/);
    assert.equal(first.messageId, '<welcome-7@members.example.test>');
    assert.equal(first.destination, join(outboxDir, files.find((file) => file.includes('welcome-7')) ?? 'missing'));
    assert.notEqual(second.destination, first.destination);

    const raw = readFileSync(first.destination, 'utf8');
    assert.match(raw, /^From: Example Members <no-reply@members\.example\.test>\r\n/m);
    assert.match(raw, /^To: ada@example\.test\r\n/m);
    assert.match(raw, /^Message-ID: <welcome-7@members\.example\.test>\r\n/m);
    assert.match(raw, /^Date: /m);
    assert.match(raw, /^MIME-Version: 1\.0\r\n/m);
    assert.match(raw, /--\r\n$/, 'the multipart message is complete, closing boundary included');
    const parsed = parseMessage(raw);
    assert.equal(parsed.subject, 'Welcome to Café');
    assert.equal(parsed.text, 'Your password: Outbox-Secret-1\nLogin: https://members.example.test/login');
    assert.equal(parsed.html, '<p>Your password: <code>Outbox-Secret-1</code></p>');

    const secondParsed = parseMessage(readFileSync(second.destination, 'utf8'));
    assert.equal(secondParsed.headers.get('to'), 'bob@example.test');
    assert.equal(secondParsed.text, 'Hi Bob');

    const logged = lines().filter((entry) => entry.msg === 'mail sent');
    assert.equal(logged.length, 2);
    assert.equal(logged[0]!.kind, 'outbox');
    assert.equal(logged[0]!.to, 'ada@example.test');
    assert.equal(logged[0]!.messageId, '<welcome-7@members.example.test>');
    assert.ok(!logText().includes('Outbox-Secret-1'), 'the body is never logged');
  });

  test('a recipient list is refused and no file is written', async () => {
    const outboxDir = join(tempDataDir(), 'outbox');
    const mailer = createMailer({ from: FROM, outboxDir, logger: captureLogs().logger });
    closeLater(mailer);
    await assert.rejects(mailer.send({ to: 'victim@example.com, attacker@evil.test', subject: 'Welcome', text: 'x' }), (err: unknown) => err instanceof MailError && !err.transient);
    assert.throws(() => readdirSync(outboxDir), /ENOENT/, 'no outbox file');
  });

  test('parallel sends to the outbox each leave exactly one whole file', async () => {
    const outboxDir = join(tempDataDir(), 'outbox');
    const mailer = createMailer({ from: FROM, outboxDir, logger: captureLogs().logger });
    closeLater(mailer);
    const big = 'x'.repeat(200_000);
    const sent = await Promise.all(Array.from({ length: 10 }, (_, i) => mailer.send({ to: `m${i}@example.test`, subject: `n${i}`, text: `${i}:${big}` })));
    const files = readdirSync(outboxDir);
    assert.equal(files.length, 10);
    assert.ok(files.every((file) => file.endsWith('.eml')), 'no temporary files are left behind');
    for (const [i, result] of sent.entries()) {
      const parsed = parseMessage(readFileSync(result.destination, 'utf8'));
      assert.equal(parsed.subject, `n${i}`);
      assert.equal(parsed.text, `${i}:${big}`);
    }
  });
});

describe('welcome email', () => {
  const views = new ViewRenderer();
  const base: WelcomeEmailData = {
    siteName: 'Example Members',
    username: 'ada.lovelace',
    email: 'ada@example.test',
    firstName: 'Ada',
    loginUrl: 'https://members.example.test/login',
  };

  test('shows the username, the login link and a generated password', () => {
    const email = renderWelcomeEmail(views, { ...base, password: 'Gen3rated-Pass!' });
    assert.equal(email.subject, 'Welcome to Example Members');
    for (const part of [email.text, email.html]) {
      assert.ok(part.includes('ada.lovelace'), 'username');
      assert.ok(part.includes('https://members.example.test/login'), 'login link');
      assert.ok(part.includes('Gen3rated-Pass!'), 'password');
      assert.ok(part.includes('Ada'), 'first name');
    }
    assert.match(email.html, /<a href="https:\/\/members\.example\.test\/login"/);
    assert.match(email.text, /^Password: Gen3rated-Pass!$/m);
    assert.ok(!email.text.includes('/password/forgot'));
    assert.doesNotMatch(email.text, /\n\n\n/, 'no runs of blank lines in the text part');
  });

  test('without a generated password it shows no password and points to the reset page', () => {
    const email = renderWelcomeEmail(views, base);
    for (const part of [email.text, email.html]) {
      assert.ok(part.includes('ada.lovelace'));
      assert.ok(part.includes('https://members.example.test/login'));
      assert.ok(part.includes('https://members.example.test/password/forgot'), 'reset link');
      assert.match(part, /already/);
      assert.doesNotMatch(part, /change this password/);
    }
    assert.doesNotMatch(email.html, /<code/);
    assert.doesNotMatch(email.text, /^Password: (?!the one you already use)/m);
  });

  test('the reset link keeps the path prefix of the login page', () => {
    const email = renderWelcomeEmail(views, { ...base, loginUrl: 'https://example.test/members/login?next=%2Faccount' });
    assert.ok(email.text.includes('https://example.test/members/password/forgot'));
  });

  test('HTML is escaped in the HTML part and left as it is in the text part and subject', () => {
    const data: WelcomeEmailData = {
      ...base,
      siteName: 'Tom & Jerry\'s <Club>',
      firstName: '<script>alert(1)</script>',
      username: 'a&b"c',
      password: '<p4ss&word>',
    };
    const email = renderWelcomeEmail(views, data);

    assert.ok(!email.html.includes('<script>'), 'no raw script tag in the HTML part');
    assert.ok(email.html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok(email.html.includes('a&amp;b&quot;c'));
    assert.ok(email.html.includes('&lt;p4ss&amp;word&gt;'));
    assert.ok(email.html.includes('Tom &amp; Jerry&#x27;s &lt;Club&gt;'));

    assert.ok(email.text.includes('Hello <script>alert(1)</script>,'));
    assert.ok(email.text.includes('Username: a&b"c'));
    assert.ok(email.text.includes('Password: <p4ss&word>'));
    assert.ok(!email.text.includes('&amp;') && !email.text.includes('&lt;'), 'nothing HTML-escaped in the text part');
    assert.equal(email.subject, 'Welcome to Tom & Jerry\'s <Club>');
  });

  test('admin overrides replace the subject, text and HTML', () => {
    const email = renderWelcomeEmail(
      views,
      { ...base, firstName: 'A & B', password: 'Pw-1' },
      {
        subject: '{{firstName}}, your {{siteName}} login',
        text: 'Hi {{firstName}}! User {{username}}{{#if password}} / {{password}}{{/if}} at {{loginUrl}}',
        html: '<p>Hi {{firstName}}</p>{{#unless password}}<p>no password</p>{{/unless}}',
      },
    );
    assert.equal(email.subject, 'A & B, your Example Members login');
    assert.equal(email.text, 'Hi A & B! User ada.lovelace / Pw-1 at https://members.example.test/login\n');
    assert.equal(email.html, '<p>Hi A &amp; B</p>');

    const partial = renderWelcomeEmail(views, base, { subject: 'Hello {{username}}', text: '', html: '  ' });
    assert.equal(partial.subject, 'Hello ada.lovelace');
    assert.ok(partial.text.includes('Username: ada.lovelace'), 'an empty override falls back to the built-in text');
    assert.ok(partial.html.includes('<strong>ada.lovelace</strong>'), 'a blank override falls back to the built-in HTML');
  });

  test('a broken override names the part that is broken', () => {
    const cases: Array<[part: 'subject' | 'text' | 'html', source: string]> = [
      ['subject', 'Welcome {{#if siteName}}'],
      ['text', 'Hello {{firstName'],
      ['html', '<p>{{noSuchHelper username}}</p>'],
    ];
    for (const [part, source] of cases) {
      assert.throws(
        () => renderWelcomeEmail(views, base, { [part]: source }),
        (err: unknown) => {
          assert.ok(err instanceof Error);
          assert.match(err.message, new RegExp(`welcome email ${part} template is broken`));
          for (const other of ['subject', 'text', 'html'].filter((name) => name !== part)) {
            assert.doesNotMatch(err.message, new RegExp(`email ${other} template`));
          }
          return true;
        },
        `a broken ${part} is reported`,
      );
    }
  });

  test('an edited template cannot call log, each, with, lookup or a partial: refused by name, and nothing reaches the console', () => {
    const written: unknown[][] = [];
    const methods = ['log', 'info', 'warn', 'error', 'debug'] as const;
    const original = methods.map((m) => console[m]);
    // Handlebars' {{log}} writes through console: watch every method it could use while the templates render.
    for (const m of methods) console[m] = (...args: unknown[]) => void written.push(args);
    try {
      const cases: Array<[source: string, named: string]> = [
        ['{{log password}}', 'log'],
        ['{{#if password}}{{log "pw" password level="error"}}{{/if}}', 'log'],
        ['{{#log password}}x{{/log}}', 'log'],
        ['{{log}}', 'log'],
        ['{{#each password}}{{this}}{{/each}}', 'each'],
        ['{{#with password}}{{this}}{{/with}}', 'with'],
        ['{{lookup this "password"}}', 'lookup'],
        ['{{#if (log password)}}x{{/if}}', 'log'],
      ];
      for (const [source, named] of cases) {
        for (const part of ['subject', 'text', 'html'] as const) {
          assert.throws(
            () => renderWelcomeEmail(views, { ...base, password: 'Secret-Pw-42' }, { [part]: source }),
            (err: Error) =>
              err.message.includes(`the helper "${named}" is not available in email templates (they can use {{#if}} and {{#unless}})`) && !err.message.includes('Secret-Pw-42'),
            `${source} in the ${part}`,
          );
        }
      }
      assert.throws(() => renderWelcomeEmail(views, base, { html: '{{> layouts/main}}' }), /partials \(\{\{> name\}\}\) are not available in email templates/);
    } finally {
      methods.forEach((m, i) => (console[m] = original[i]!));
    }
    assert.deepEqual(written, [], 'nothing was written to the console');
  });

  test('the rendered email goes out through the mailer intact', async () => {
    const server = await startSmtpServer();
    const mailer = createMailer({ smtpUrl: server.url, from: FROM, outboxDir: tempDataDir(), logger: captureLogs().logger, timeoutMs: 5000 });
    closeLater(mailer, server);
    const email = renderWelcomeEmail(views, { ...base, firstName: 'Zoë <&>', password: 'Pw = 100%' });
    await mailer.send({ to: base.email, ...email });
    const message = server.messages[0];
    assert.ok(message);
    assert.equal(message.subject, email.subject);
    assert.equal(message.text, email.text);
    assert.ok(message.text.includes('Hello Zoë <&>,'));
    assert.ok(message.text.includes('Password: Pw = 100%'));
    assert.ok(message.html?.includes('Zoë &lt;&amp;&gt;'));
  });
});
