import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkTemplate, DEFAULT_TEMPLATE, renderTemplate, sampleEvent, type OutboundEvent } from '../src/features/outbound-webhooks/template.js';

const event: OutboundEvent = {
  id: 'msg_1',
  type: 'member.updated',
  timestamp: '2026-12-08T00:15:30.250Z',
  data: { member: { id: 7, email: 'o\'brien+vip@example.com', firstName: 'Tom & "Jerry" <b>', tags: [{ name: 'A' }, { name: 'B' }] }, changed: ['firstName'] },
};

describe('rendering', () => {
  test('the default template is the JSON envelope { type, timestamp, data }', () => {
    const body = renderTemplate(DEFAULT_TEMPLATE, event);
    assert.deepEqual(JSON.parse(body), { type: event.type, timestamp: event.timestamp, data: event.data });
    assert.equal(checkTemplate(DEFAULT_TEMPLATE), null);
  });

  test('values are not HTML-escaped; json is the safe way to put them into JSON', () => {
    assert.equal(renderTemplate('{{data.member.firstName}}', event), 'Tom & "Jerry" <b>');
    const body = renderTemplate('{"name":{{json data.member.firstName}},"id":{{json data.member.id}},"missing":{{json data.nothing}} }', event);
    assert.deepEqual(JSON.parse(body), { name: 'Tom & "Jerry" <b>', id: 7, missing: null });
  });

  test('json indent pretty-prints', () => {
    assert.equal(renderTemplate('{{json data.changed indent=2}}', event), '[\n  "firstName"\n]');
  });

  test('urlencode encodes for a form body or URL', () => {
    assert.equal(renderTemplate('email={{urlencode data.member.email}}&type={{urlencode type}}', event), 'email=o\'brien%2Bvip%40example.com&type=member.updated');
    assert.equal(renderTemplate('x={{urlencode data.nothing}}', event), 'x=');
  });

  test('date formats', () => {
    const cases: Array<[string, string]> = [
      ['{{date timestamp}}', '2026-12-08T00:15:30.250Z'],
      ['{{date timestamp format="epoch"}}', '1796688930'],
      ['{{date timestamp format="epoch_ms"}}', '1796688930250'],
      ['{{date timestamp format="date"}}', '2026-12-08'],
      ['{{date timestamp format="DD/MM/YYYY HH:mm:ss.SSS"}}', '08/12/2026 00:15:30.250'],
      ['{{date 0}}', '1970-01-01T00:00:00.000Z'],
      ['[{{date data.nothing}}]', '[]'],
      ['[{{date "not a date"}}]', '[]'],
    ];
    for (const [source, expected] of cases) assert.equal(renderTemplate(source, event), expected, source);
    assert.equal(Date.parse('2026-12-08T00:15:30.250Z'), 1796688930250);
  });

  test('loops and conditionals over the event', () => {
    assert.equal(renderTemplate('{{#each data.member.tags}}{{name}}{{#unless @last}},{{/unless}}{{/each}}', event), 'A,B');
    assert.equal(renderTemplate('{{#if data.member.email}}yes{{else}}no{{/if}}', event), 'yes');
    assert.equal(renderTemplate('{{#with data.member}}{{id}}{{/with}}', event), '7');
    assert.equal(renderTemplate('{{id}} {{type}}', event), 'msg_1 member.updated');
  });
});

describe('the sandbox', () => {
  test('prototype properties are not reachable', () => {
    assert.equal(renderTemplate('[{{constructor}}][{{data.constructor}}][{{lookup data "__proto__"}}][{{data.member.toString}}]', event), '[][][][]');
    assert.equal(renderTemplate('{{#with data}}{{constructor.name}}{{/with}}', event), '');
  });

  test('checkTemplate names what is wrong', () => {
    const cases: Array<[string, RegExp]> = [
      ['{{#if type}}unclosed', /^Parse error on line 1, near "\{\{#if type\}\}unclosed": the template ends inside a block: a \{\{#…\}\} needs its \{\{\/…\}\}$/],
      ['{{#each data.member.tags}}{{name}}{{/each}', /^Parse error on line 1, near "\.\.\.ags\}\}\{\{name\}\}\{\{\/each\}": a \{\{ that is not closed by \}\}/],
      ['{{#if type}}x{{/each}}', /^\{\{#if\}\} on line 1 is closed by \{\{\/each\}\}: close it with \{\{\/if\}\}$/],
      ['{"data":{{json data}}}', /Parse error on line 1: a "\}" right after "\}\}" reads as "\}\}\}"; put a space/],
      ['{{log "x"}}', /helper "log" is not available/],
      ['{{> header}}', /partials .* are not available/],
      ['{{#*inline "x"}}y{{/inline}}', /decorators .* are not available/],
      ['{{exec "rm -rf /"}}', /helper "exec" is not available/],
      ['{{date timestamp format=5}}', /format must be a string/],
      ['{{date timestamp format="nonsense"}}', /unknown format "nonsense"/],
      ['{{json data indent=99}}', /indent must be a whole number/],
      ['{{json data type}}', /json takes one value/],
      ['x'.repeat(70_000), /longer than 65536 characters/],
    ];
    for (const [source, message] of cases) {
      const problem = checkTemplate(source);
      assert.ok(problem, `expected a problem with ${source.slice(0, 40)}`);
      assert.match(problem, message);
      assert.ok(!problem.includes('\n'), 'one line');
      assert.throws(() => renderTemplate(source, event));
    }
  });

  test('a template fine for the sample events passes', () => {
    assert.equal(checkTemplate('{"email":{{json data.member.email}},"when":"{{date timestamp format="epoch"}}"}'), null);
    assert.equal(checkTemplate('plain text for Slack: {{type}}'), null);
  });
});

describe('sample events', () => {
  test('member events carry the member and what changed; Keap events the normalized event', () => {
    for (const type of ['member.created', 'member.updated', 'member.tags_changed', 'member.role_changed', 'member.deleted', 'member.logged_in', 'member.password_changed']) {
      const sample = sampleEvent(type);
      assert.equal(sample.type, type);
      assert.equal((sample.data as { member: { email: string } }).member.email, 'ada@example.com');
      assert.equal(JSON.parse(renderTemplate(DEFAULT_TEMPLATE, sample)).type, type);
    }
    assert.deepEqual((sampleEvent('member.tags_changed').data as { added: unknown[] }).added.length, 1);
    const keap = sampleEvent('keap.contactGroup.applied').data as { object_type: string; event_type: string; member: unknown };
    assert.equal(keap.object_type, 'contactGroup');
    assert.equal(keap.event_type, 'contactGroup.applied');
    assert.equal(keap.member, null);
    assert.equal((sampleEvent('keap.contact.*').data as { object_type: string }).object_type, 'contact');
  });
});
