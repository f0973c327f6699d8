import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { defaultWelcomeTemplate } from '../src/features/welcome-email/template.js';
import { SEED } from '../tools/keap-sandbox/index.js';
import { ADMIN_EMAIL, ADMIN_PASSWORD, MEMBER_PASSWORD, adminAgent, memberAgent, submitForm, testSiteWithAdmin } from './support/admin-site.js';
import { startHarness } from './support/harness.js';
import { alertOf, csrfFrom } from './support/pages.js';

const PAGE = '/admin/settings/members';

function fieldError(html: string, field: string): string | undefined {
  return new RegExp(`<p class="field-error" id="${field}-error">([^<]*)</p>`).exec(html)?.[1];
}

/** A template editor's textarea (`welcome`, `text`): its id is the email's key and the part. */
function textareaOf(html: string, name: string, email = 'welcome'): string | undefined {
  // As a browser reads it: the one line break right after the start tag is not part of the value.
  return new RegExp(`<textarea id="${email}-${name}" name="${name}"[^>]*>\\n?([\\s\\S]*?)</textarea>`).exec(html)?.[1];
}

/** What a browser shows for escaped HTML text. */
function unescapeHtml(text: string): string {
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#x27;/g, "'").replace(/&#x60;/g, '`').replace(/&#x3D;/g, '=').replace(/&amp;/g, '&');
}

const BROKEN_HTML = '<p>Hello {{firstName}}</p>\n<p>Line two</p>\n{{#if password}}<b>{{password}}</b>\n';

test('the member settings page needs an admin session: anonymous visitors go to the admin login, members get 403', async () => {
  const site = await testSiteWithAdmin();
  const anonymous = await request(site.app).get(PAGE);
  assert.equal(anonymous.status, 303);
  assert.equal(anonymous.headers.location, '/admin/login?next=/admin/settings/members');

  const { agent: member, csrf } = await memberAgent(site.app);
  assert.equal((await member.get(PAGE)).status, 403);
  const post = await member.post(PAGE).type('form').send({ _csrf: csrf, default_role: 'member' });
  assert.equal(post.status, 403);
  assert.equal(site.ctx.site.defaultRole(), 'subscriber');
});

test('every member settings form is refused without its form token, and nothing changes', async () => {
  const site = await testSiteWithAdmin();
  const admin = await adminAgent(site.app);
  site.ctx.site.setWelcomeTemplate({ subject: 'Kept {{siteName}}', text: '', html: '' });
  for (const action of ['', '/welcome', '/welcome/preview', '/welcome/reset']) {
    const res = await admin.post(`${PAGE}${action}`).type('form').send({ default_role: 'member', always_send_welcome: '1', subject: 'Changed', text: 'x', html: 'y' });
    assert.equal(res.status, 403, `POST ${PAGE}${action} without _csrf`);
  }
  assert.equal(site.ctx.site.defaultRole(), 'subscriber');
  assert.equal(site.ctx.site.alwaysSendWelcome(), false);
  assert.equal(site.ctx.site.welcomeTemplate().subject, 'Kept {{siteName}}');
});

test('the default role is chosen from the roles without admin rights, and validated', async () => {
  const site = await testSiteWithAdmin();
  const admin = await adminAgent(site.app);
  const html = (await admin.get(PAGE)).text;
  assert.match(html, /aria-current="page">Site, members &amp; emails</, 'the settings tab is marked');
  const select = /<select id="default_role" name="default_role">([\s\S]*?)<\/select>/.exec(html)?.[1] ?? '';
  const slugs = [...select.matchAll(/<option value="([^"]+)"/g)].map((m) => m[1]);
  const expected = site.ctx.members.roles().filter((r) => !r.isAdmin).map((r) => r.slug);
  assert.deepEqual(slugs, expected);
  assert.equal(slugs.includes('administrator'), false);
  assert.match(select, /<option value="subscriber" selected>/);

  let res = await submitForm(admin, PAGE, PAGE, { default_role: 'administrator' });
  assert.equal(res.status, 400);
  assert.match(fieldError(res.text, 'default_role') ?? '', /admin rights/);
  res = await submitForm(admin, PAGE, PAGE, { default_role: 'no-such-role' });
  assert.equal(res.status, 400);
  assert.match(fieldError(res.text, 'default_role') ?? '', /Choose one of the roles/);
  assert.equal(site.ctx.site.defaultRole(), 'subscriber', 'nothing saved');

  res = await submitForm(admin, PAGE, PAGE, { default_role: 'member', always_send_welcome: '1' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, `${PAGE}?done=saved`);
  assert.equal(site.ctx.site.defaultRole(), 'member');
  assert.equal(site.ctx.site.alwaysSendWelcome(), true);
  const saved = (await admin.get(res.headers.location!)).text;
  assert.match(saved, /data-notice/);
  assert.match(saved, /<option value="member" selected>/);
  assert.match(saved, /name="always_send_welcome" value="1" checked/);

  res = await submitForm(admin, PAGE, PAGE, { default_role: 'member' });
  assert.equal(res.status, 303);
  assert.equal(site.ctx.site.alwaysSendWelcome(), false, 'an unticked box turns it off');
});

test('DEFAULT_ROLE in the environment makes the default role read-only; a POST that changes it is refused', async () => {
  const site = await testSiteWithAdmin({ DEFAULT_ROLE: 'member' });
  const admin = await adminAgent(site.app);
  const html = (await admin.get(PAGE)).text;
  assert.match(html, /data-fixed="default_role"><code>member<\/code>/);
  assert.match(html, /set by <code>DEFAULT_ROLE<\/code>/);
  assert.doesNotMatch(html, /name="default_role"/);

  let res = await submitForm(admin, PAGE, PAGE, { default_role: 'subscriber', always_send_welcome: '1' });
  assert.equal(res.status, 400);
  assert.match(fieldError(res.text, 'default_role') ?? '', /set by DEFAULT_ROLE/);
  assert.equal(site.ctx.site.alwaysSendWelcome(), false, 'a refused form saves nothing');
  assert.equal(site.ctx.settings.get('members.default_role'), undefined);

  res = await submitForm(admin, PAGE, PAGE, { always_send_welcome: '1' });
  assert.equal(res.status, 303, 'the rest of the form still saves');
  assert.equal(site.ctx.site.alwaysSendWelcome(), true);
  assert.equal(site.ctx.site.defaultRole(), 'member');
});

test('the welcome email editor starts from the built-in templates and lists the variables', async () => {
  const site = await testSiteWithAdmin();
  const admin = await adminAgent(site.app);
  const html = (await admin.get(PAGE)).text;
  const builtIn = defaultWelcomeTemplate();
  assert.equal(unescapeHtml(textareaOf(html, 'text') ?? ''), builtIn.text);
  assert.equal(unescapeHtml(textareaOf(html, 'html') ?? ''), builtIn.html);
  assert.match(html, /<input id="welcome-subject" name="subject" type="text" value="Welcome to \{\{siteName\}\}"/);
  assert.match(html, /data-template-default/);
  for (const name of ['siteName', 'firstName', 'username', 'email', 'password', 'loginUrl', 'resetUrl']) {
    assert.ok(html.includes(`<code>{{${name}}}</code>`), `the variable ${name} is listed`);
  }
});

test('a template that does not compile is refused with 400 naming the part and line; nothing is saved', async () => {
  const site = await testSiteWithAdmin();
  const admin = await adminAgent(site.app);
  const builtIn = defaultWelcomeTemplate();
  let res = await submitForm(admin, PAGE, `${PAGE}/welcome`, { subject: 'Hi {{firstName}}', text: 'Hello', html: BROKEN_HTML });
  assert.equal(res.status, 400);
  assert.match(alertOf(res.text) ?? '', /HTML body of the welcome email has an error on line \d+; nothing was saved/);
  assert.match(fieldError(res.text, 'welcome-html') ?? '', /^The HTML body does not compile on line \d+: Parse error/);
  assert.equal(unescapeHtml(textareaOf(res.text, 'html') ?? ''), BROKEN_HTML, 'the form keeps what was typed');
  assert.deepEqual(site.ctx.site.welcomeTemplate(), { subject: undefined, text: undefined, html: undefined });

  res = await submitForm(admin, PAGE, `${PAGE}/welcome`, { subject: 'Hi {{firstName}}', text: 'Hello\n{{#if password}}\n{{shout password}}\n{{/if}}', html: builtIn.html });
  assert.equal(res.status, 400, 'a missing helper in the password branch is caught too');
  assert.match(fieldError(res.text, 'welcome-text') ?? '', /the helper &quot;shout&quot; is not available in email templates/);
  res = await submitForm(admin, PAGE, `${PAGE}/welcome`, { subject: '{{#each}}x{{/each}}', text: '', html: '' });
  assert.equal(res.status, 400);
  assert.ok(fieldError(res.text, 'welcome-subject'));
  assert.deepEqual(site.ctx.site.welcomeTemplate(), { subject: undefined, text: undefined, html: undefined });
});

test('Preview renders the sample member with the edited template without saving it', async () => {
  const site = await testSiteWithAdmin();
  const admin = await adminAgent(site.app);
  const res = await submitForm(admin, PAGE, `${PAGE}/welcome/preview`, {
    subject: 'Hi {{firstName}} & welcome',
    text: 'Your login: {{username}}\r\n{{#if password}}Password: {{password}}{{/if}}\r\n',
    html: '<h1 class="x">Hi {{firstName}}</h1><p>{{loginUrl}}</p><script>alert(1)</script>',
  });
  assert.equal(res.status, 200);
  assert.match(res.text, /data-email-preview/);
  assert.match(res.text, /<span data-preview-subject>Hi Ada &amp; welcome<\/span>/);
  const text = /<pre data-preview-text[^>]*>([\s\S]*?)<\/pre>/.exec(res.text)?.[1];
  assert.equal(text, 'Your login: ada\nPassword: Sample-Passw0rd-7\n');
  const srcdoc = /<iframe sandbox srcdoc="([^"]*)"/.exec(res.text)?.[1];
  assert.ok(srcdoc, 'the HTML is shown in a sandboxed frame');
  assert.equal(unescapeHtml(srcdoc), '<h1 class="x">Hi Ada</h1><p>http://localhost:0/login</p><script>alert(1)</script>');
  assert.doesNotMatch(res.text, /<script>alert/, 'the template’s HTML is never part of the admin page itself');
  assert.ok(/frame-ancestors 'self'/.test(String(res.headers['content-security-policy'])));
  assert.doesNotMatch(String(res.headers['content-security-policy']), /frame-src/, 'no frame-src that would block the srcdoc frame');
  assert.deepEqual(site.ctx.site.welcomeTemplate(), { subject: undefined, text: undefined, html: undefined }, 'a preview saves nothing');

  const broken = await submitForm(admin, PAGE, `${PAGE}/welcome/preview`, { subject: 'x', text: '', html: BROKEN_HTML });
  assert.equal(broken.status, 400);
  assert.ok(fieldError(broken.text, 'welcome-html'));
  assert.doesNotMatch(broken.text, /data-email-preview/);
});

test('Save stores the template, an unchanged part stays the built-in one, and Reset goes back to the default', async () => {
  const site = await testSiteWithAdmin();
  const admin = await adminAgent(site.app);
  const builtIn = defaultWelcomeTemplate();
  const text = 'Hello {{firstName}},\r\nlog in as {{username}} at {{loginUrl}}\r\n';
  let res = await submitForm(admin, PAGE, `${PAGE}/welcome`, { subject: 'Welcome aboard, {{firstName}}', text, html: builtIn.html.replace(/\n/g, '\r\n') });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, `${PAGE}?done=template_saved#welcome-email`);
  assert.deepEqual(site.ctx.site.welcomeTemplate(), {
    subject: 'Welcome aboard, {{firstName}}',
    text: 'Hello {{firstName}},\nlog in as {{username}} at {{loginUrl}}\n',
    html: undefined,
  });
  let html = (await admin.get(res.headers.location!)).text;
  assert.match(html, /data-template-customized/);
  assert.equal(unescapeHtml(textareaOf(html, 'text') ?? ''), 'Hello {{firstName}},\nlog in as {{username}} at {{loginUrl}}\n');

  res = await submitForm(admin, PAGE, `${PAGE}/welcome/reset`, {});
  assert.equal(res.status, 303);
  assert.deepEqual(site.ctx.site.welcomeTemplate(), { subject: undefined, text: undefined, html: undefined });
  html = (await admin.get(res.headers.location!)).text;
  assert.match(html, /data-template-default/);
  assert.equal(unescapeHtml(textareaOf(html, 'text') ?? ''), builtIn.text);

  const tooLong = await submitForm(admin, PAGE, `${PAGE}/welcome`, { subject: 'x', text: 'y'.repeat(20_001), html: '' });
  assert.equal(tooLong.status, 400);
  assert.match(fieldError(tooLong.text, 'welcome-text') ?? '', /too long/);
});

test('the welcome email the job sends is the template saved on the page', async () => {
  const h = await startHarness({ env: { ADMIN_EMAIL, ADMIN_PASSWORD } });
  after(() => h.close());
  const admin = await adminAgent(h.server.url as unknown as Parameters<typeof adminAgent>[0]);
  const res = await submitForm(admin, PAGE, `${PAGE}/welcome`, {
    subject: 'Your {{siteName}} account, {{firstName}}',
    text: 'Hi {{firstName}}, your username is {{username}}.\n{{#if password}}Password: {{password}}{{/if}}\n',
    html: '<p>Hi {{firstName}} &amp; welcome, <b>{{username}}</b></p>',
  });
  assert.equal(res.status, 303);
  assert.equal((await h.post({ contactId: String(SEED.contacts.ada), wpf_action: 'add', send_notification: 'true' })).status, 200);
  await h.settle();
  assert.equal(h.smtp.messages.length, 1);
  const mail = h.smtp.messages[0]!;
  assert.equal(mail.subject, 'Your memberhook account, Ada');
  assert.match(mail.text, /^Hi Ada, your username is ada@example\.com\.\nPassword: \S+/);
  assert.match(mail.html ?? '', /<p>Hi Ada &amp; welcome, <b>ada@example\.com<\/b><\/p>/);
});

test('a template that calls {{log password}} is refused on save, naming the helper, and nothing is written to the console', async () => {
  const site = await testSiteWithAdmin();
  const admin = await adminAgent(site.app);
  const builtIn = defaultWelcomeTemplate();
  const written: unknown[][] = [];
  const methods = ['log', 'info', 'warn', 'error', 'debug'] as const;
  const original = methods.map((m) => console[m]);
  for (const m of methods) console[m] = (...args: unknown[]) => void written.push(args);
  let res;
  try {
    res = await submitForm(admin, PAGE, `${PAGE}/welcome`, { subject: builtIn.subject, text: 'Your password: {{password}}{{log password}}', html: builtIn.html });
  } finally {
    methods.forEach((m, i) => (console[m] = original[i]!));
  }
  assert.equal(res.status, 400);
  assert.equal(fieldError(res.text, 'welcome-text'), 'The text body does not compile on line 1: the helper &quot;log&quot; is not available in email templates (they can use {{#if}} and {{#unless}})');
  assert.match(alertOf(res.text) ?? '', /nothing was saved/);
  assert.deepEqual(site.ctx.site.welcomeTemplate(), { subject: undefined, text: undefined, html: undefined }, 'nothing was saved');
  assert.deepEqual(written, [], 'the sample password was not written to the console');
  assert.equal(site.logs.text().includes('Sample-Passw0rd-7'), false, 'nor to the log');
});
