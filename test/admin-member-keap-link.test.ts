/**
 * Members added by hand linked to Keap: on "Add a member" and on an unlinked member's page, an existing contact
 * (looked up by id or email and shown) or a new one (v1 POST /contacts). Against the Keap sandbox and an SMTP
 * server on loopback, through the admin pages as a browser uses them.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { verifyPassword } from '../src/features/members/passwords.js';
import { SEED } from '../tools/keap-sandbox/index.js';
import { ADMIN_EMAIL, ADMIN_PASSWORD, adminAgent, createMember, submitForm, testSiteWithAdmin } from './support/admin-site.js';
import { startHarness, type Harness } from './support/harness.js';
import { alertOf } from './support/pages.js';

const NEW = '/admin/members/new';

async function site(): Promise<{ h: Harness; admin: request.Agent }> {
  const h = await startHarness({ env: { ADMIN_EMAIL, ADMIN_PASSWORD } });
  after(() => h.close());
  const admin = await adminAgent(h.server.url as unknown as Parameters<typeof adminAgent>[0]);
  return { h, admin };
}

function fieldError(html: string, field: string): string | undefined {
  return new RegExp(`<p class="field-error" id="${field}-error">([^<]*)</p>`).exec(html)?.[1];
}

function foundCard(html: string): string | undefined {
  return /<p data-keap-found[^>]*>([\s\S]*?)<\/p>/.exec(html)?.[1]?.replace(/<[^>]+>/g, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/\s+/g, ' ').trim();
}

function contactsWithEmail(h: Harness, email: string): number[] {
  return [...h.sandbox.state.contacts.values()].filter((c) => c.email_addresses.some((e) => e.email.toLowerCase() === email)).map((c) => c.id);
}

test('"link to an existing contact": looked up by email or id and shown, then linked; the generated password goes to Keap and the contact’s tags come in', async () => {
  const { h, admin } = await site();
  const grace = h.sandbox.state.addContact({ given_name: 'Grace', family_name: 'Hopper', email: 'grace@example.test' }).id;
  h.sandbox.state.applyTag(grace, SEED.tags.vip);

  const form = (await admin.get(NEW)).text;
  assert.match(form, /<input type="radio" name="keap_link" value="none" checked> Not linked/, 'not linked unless chosen');

  let res = await submitForm(admin, NEW, `${NEW}/lookup`, { email: 'grace@example.test', role: 'member', keap_link: 'link', keap_contact: 'GRACE@example.test' });
  assert.equal(res.status, 200);
  assert.equal(foundCard(res.text), `Found Keap contact #${grace}: Grace Hopper <grace@example.test>`);
  assert.match(res.text, new RegExp(`<input id="keap_contact" name="keap_contact" type="text" value="${grace}"`), 'the id of the contact found goes in the field');
  assert.doesNotMatch(res.text, /data-keap-other-email/);
  assert.equal(h.server.ctx.members.findByEmail('grace@example.test'), undefined, 'a look-up saves nothing');

  res = await submitForm(admin, NEW, `${NEW}/lookup`, { email: 'someone.else@example.test', keap_link: 'link', keap_contact: String(grace) });
  assert.equal(foundCard(res.text), `Found Keap contact #${grace}: Grace Hopper <grace@example.test>`, 'by id too');
  assert.match(res.text, /data-keap-other-email/, 'an email that is not the member’s is pointed out');

  res = await submitForm(admin, NEW, NEW, { email: 'grace@example.test', first_name: 'Grace', last_name: 'Hopper', role: 'member', send_welcome: '1', keap_link: 'link', keap_contact: String(grace) });
  assert.equal(res.status, 303);
  const member = h.server.ctx.members.findByEmail('grace@example.test')!;
  assert.equal(member.keapContactId, grace);
  assert.match(res.headers.location!, new RegExp(`^/admin/members/${member.id}\\?done=created&keap=linked&event=\\d+&generated=1$`));
  await h.settle();

  const written = h.sandbox.state.customFieldValue(grace, SEED.fields.password);
  assert.equal(typeof written, 'string', 'the generated password was written to the contact’s password field');
  assert.ok(await verifyPassword(String(written), h.server.ctx.members.passwordHash(member.id)), 'and it is the member’s password');
  const welcome = h.smtp.messages.find((m) => m.to.includes('grace@example.test'));
  assert.ok(welcome?.text.includes(String(written)), 'the welcome email carries the same password');
  assert.deepEqual(h.server.ctx.members.findById(member.id)!.tags.map((t) => t.id), [SEED.tags.vip], 'the contact’s tags came in');
  assert.equal(h.server.ctx.db.prepare('SELECT count(*) FROM pending_passwords').pluck().get(), 0, 'the password waits for nothing more');
  const page = (await admin.get(res.headers.location!)).text;
  assert.match(page, new RegExp(`Member added with a generated password, linked to Keap contact ${grace}; welcome email queued`));
  assert.doesNotMatch(page, /id="keap-panel"/, 'a linked member is offered no link');
});

test('"create a contact in Keap": POST /v1/contacts with the email and names, linked; refused when Keap already has the email, creating nothing', async () => {
  const { h, admin } = await site();
  const before = h.sandbox.state.contacts.size;
  let res = await submitForm(admin, NEW, NEW, { email: 'Katherine@Example.test', first_name: 'Katherine', last_name: 'Johnson', role: 'member', keap_link: 'create' });
  assert.equal(res.status, 303);
  const member = h.server.ctx.members.findByEmail('katherine@example.test')!;
  const created = h.sandbox.state.contact(member.keapContactId!)!;
  assert.ok(created, 'the member is linked to a new contact');
  assert.equal(h.sandbox.state.contacts.size, before + 1);
  assert.deepEqual([created.given_name, created.family_name, created.email_addresses], ['Katherine', 'Johnson', [{ email: 'Katherine@Example.test', field: 'EMAIL1' }]]);
  assert.equal(h.sandbox.state.requestsTo('POST', '/crm/rest/v1/contacts').length, 1);
  await h.settle();
  assert.equal(typeof h.sandbox.state.customFieldValue(created.id, SEED.fields.password), 'string', 'the generated password was written back to it');
  assert.match((await admin.get(res.headers.location!)).text, new RegExp(`Member added, linked to the new Keap contact ${created.id}\\. Its password was generated`));

  // Keap already has Ada's address: a second contact for it would be a duplicate.
  res = await submitForm(admin, NEW, NEW, { email: 'ada@example.com', username: 'ada2', role: 'member', keap_link: 'create' });
  assert.equal(res.status, 400);
  assert.match(fieldError(res.text, 'keap_link') ?? '', new RegExp(`^Keap already has contact ${SEED.contacts.ada} with the email ada@example.com: choose “Link to an existing contact” instead. The member was not added.$`));
  assert.match(res.text, /<input type="radio" name="keap_link" value="create" id="keap_link_create" checked>/, 'the form keeps the choice');
  assert.equal(h.server.ctx.members.findByEmail('ada@example.com'), undefined);
  assert.equal(h.sandbox.state.contacts.size, before + 1, 'no contact was created');
});

test('linking is refused, naming the field, for a contact Keap does not have or another member is linked to; nothing is created', async () => {
  const { h, admin } = await site();
  assert.equal((await h.post({ contactId: String(SEED.contacts.ada), wpf_action: 'add' })).status, 200);
  await h.settle();
  const members = () => h.server.ctx.db.prepare('SELECT count(*) FROM members').pluck().get() as number;
  const count = members();
  const cases: Array<[contact: string, message: RegExp]> = [
    ['987654', /^Keap has no contact with the id 987654\./],
    ['nobody@example.test', /^Keap has no contact with the email nobody@example.test\./],
    [String(SEED.contacts.ada), new RegExp(`^Keap contact ${SEED.contacts.ada} is already linked to the member ada@example.com\\.`)],
    ['not a reference', /^Enter a Keap contact id \(a number\) or an email address\./],
    ['', /^Enter the Keap contact’s id or email address, or choose “Not linked”\.$/],
  ];
  for (const [contact, message] of cases) {
    const res = await submitForm(admin, NEW, NEW, { email: 'new@example.test', role: 'member', keap_link: 'link', keap_contact: contact });
    assert.equal(res.status, 400, contact);
    assert.match(fieldError(res.text, 'keap_contact') ?? '', message, contact);
    assert.match(alertOf(res.text) ?? '', /Nothing was saved/);
  }
  const lookup = await submitForm(admin, NEW, `${NEW}/lookup`, { keap_link: 'link', keap_contact: '987654' });
  assert.equal(lookup.status, 400);
  assert.match(fieldError(lookup.text, 'keap_contact') ?? '', /^Keap has no contact with the id 987654\.$/);
  assert.equal(members(), count, 'no member was added');
});

test('Keap unreachable: the member is not added, the form says why and offers "Add without linking"; a create Keap may have done is not repeated', async () => {
  const { h, admin } = await site();
  h.sandbox.failNext(3, 503);
  let res = await submitForm(admin, NEW, NEW, { email: 'mary@example.test', role: 'member', keap_link: 'link', keap_contact: 'mary@example.test' });
  assert.equal(res.status, 503);
  assert.equal(fieldError(res.text, 'keap_contact'), 'Keap could not be asked: it failed (HTTP 503). The member was not added.');
  assert.match(res.text, /<button type="submit" class="secondary" name="without_keap" value="1" id="create-without-keap">Add without linking<\/button>/);
  assert.equal(h.server.ctx.members.findByEmail('mary@example.test'), undefined);

  res = await submitForm(admin, NEW, NEW, { email: 'mary@example.test', role: 'member', keap_link: 'link', keap_contact: 'mary@example.test', without_keap: '1' });
  assert.equal(res.status, 303);
  assert.equal(h.server.ctx.members.findByEmail('mary@example.test')!.keapContactId, null, 'added, not linked');

  // The connection drops after Keap created the contact: the POST is not sent again, and the next try finds it.
  h.sandbox.troubleNext(1, { kind: 'drop', phase: 'after-processing' }, { method: 'POST', path: '/crm/rest/v1/contacts' });
  res = await submitForm(admin, NEW, NEW, { email: 'dorothy@example.test', first_name: 'Dorothy', role: 'member', keap_link: 'create' });
  assert.equal(res.status, 503);
  assert.equal(fieldError(res.text, 'keap_link'), 'Keap could not be asked: it could not be reached. The member was not added.');
  assert.equal(h.sandbox.state.requestsTo('POST', '/crm/rest/v1/contacts').length, 1, 'one POST, not retried');
  const made = contactsWithEmail(h, 'dorothy@example.test');
  assert.equal(made.length, 1);
  res = await submitForm(admin, NEW, NEW, { email: 'dorothy@example.test', first_name: 'Dorothy', role: 'member', keap_link: 'create' });
  assert.equal(res.status, 400);
  assert.match(fieldError(res.text, 'keap_link') ?? '', new RegExp(`^Keap already has contact ${made[0]} with the email dorothy@example.test`));
  res = await submitForm(admin, NEW, NEW, { email: 'dorothy@example.test', first_name: 'Dorothy', role: 'member', keap_link: 'link', keap_contact: 'dorothy@example.test' });
  assert.equal(res.status, 303);
  assert.equal(h.server.ctx.members.findByEmail('dorothy@example.test')!.keapContactId, made[0]);
  assert.equal(contactsWithEmail(h, 'dorothy@example.test').length, 1, 'one contact in Keap');
});

test('an unlinked member’s page links it to an existing contact (its tags come in) or to a new one; a linked member is refused', async () => {
  const { h, admin } = await site();
  const { ctx } = h.server;
  const hedy = await createMember(ctx, { email: 'hedy@example.test', username: 'hedy', role: 'member', password: 'frequency hopping 1942', firstName: 'Hedy', lastName: 'Lamarr' });
  const contact = h.sandbox.state.addContact({ given_name: 'Hedy', family_name: 'Lamarr', email: 'hedy@example.test' }).id;
  h.sandbox.state.applyTag(contact, SEED.tags.member);
  const page = `/admin/members/${hedy.id}`;
  let html = (await admin.get(page)).text;
  assert.match(html, /id="keap-panel"/);
  assert.match(html, /<input id="keap_contact" name="keap_contact" type="text" value="hedy@example.test"/, 'the member’s email is ready to look up');
  assert.doesNotMatch(html, /value="none"/, 'no "not linked" choice on an unlinked member’s page');

  let res = await submitForm(admin, page, `${page}/keap/lookup`, { keap_contact: 'hedy@example.test' });
  assert.equal(res.status, 200);
  assert.equal(foundCard(res.text), `Found Keap contact #${contact}: Hedy Lamarr <hedy@example.test>`);
  assert.equal(ctx.members.findById(hedy.id)!.keapContactId, null, 'a look-up links nothing');

  res = await submitForm(admin, page, `${page}/keap`, { keap_link: 'link', keap_contact: String(contact) });
  assert.equal(res.status, 303);
  assert.match(res.headers.location!, new RegExp(`^${page}\\?done=keap_linked&event=\\d+$`));
  assert.equal(ctx.members.findById(hedy.id)!.keapContactId, contact);
  await h.settle();
  assert.deepEqual(ctx.members.findById(hedy.id)!.tags.map((t) => t.id), [SEED.tags.member]);
  html = (await admin.get(res.headers.location!)).text;
  assert.match(html, new RegExp(`Linked to Keap contact ${contact}; its tags and fields are being fetched`));
  assert.doesNotMatch(html, /id="keap-panel"/);

  res = await submitForm(admin, page, `${page}/keap`, { keap_link: 'create' });
  assert.equal(res.status, 409, 'a linked member is not linked again');
  assert.equal(ctx.members.findById(hedy.id)!.keapContactId, contact);

  const annie = await createMember(ctx, { email: 'annie@example.test', username: 'annie', role: 'member', password: 'frequency hopping 1942', firstName: 'Annie', lastName: 'Easley' });
  const annies = `/admin/members/${annie.id}`;
  res = await submitForm(admin, annies, `${annies}/keap`, { keap_link: 'link', keap_contact: String(contact) });
  assert.equal(res.status, 400);
  assert.match(res.text, new RegExp(`Keap contact ${contact} is already linked to the member hedy@example.test\\.`));
  res = await submitForm(admin, annies, `${annies}/keap`, { keap_link: 'create' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, `${annies}?done=keap_created`);
  const created = h.sandbox.state.contact(ctx.members.findById(annie.id)!.keapContactId!)!;
  assert.deepEqual([created.given_name, created.family_name, created.email_addresses[0]?.email], ['Annie', 'Easley', 'annie@example.test']);
});

test('without a Keap connection the choices are shown disabled and a link or create is refused, naming the field', async () => {
  const { app, ctx } = await testSiteWithAdmin();
  const admin = await adminAgent(app);
  const form = (await admin.get(NEW)).text;
  assert.match(form, /data-keap-not-connected/);
  assert.match(form, /<input type="radio" name="keap_link" value="create" id="keap_link_create" disabled>/);
  const res = await submitForm(admin, NEW, NEW, { email: 'new@example.com', role: 'member', keap_link: 'create' });
  assert.equal(res.status, 400);
  assert.match(fieldError(res.text, 'keap_link') ?? '', /^Keap is not connected/);
  assert.equal(ctx.members.findByEmail('new@example.com'), undefined);
});
