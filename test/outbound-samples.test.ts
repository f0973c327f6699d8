import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { OutboundWebhooks } from '../src/features/outbound-webhooks/service.js';
import { sampleEvent } from '../src/features/outbound-webhooks/template.js';
import { startHarness } from './support/harness.js';
import { startReceiver, waitUntil } from './support/receiver.js';

/**
 * The template preview and the check on save use sample events: a template written against them must find the same
 * fields in the real events. Here real member changes go through the outbox to a receiver with the default
 * envelope, and each event's data has the keys its sample has, all the way down.
 */

/** The keys of a value, nested (`member.tags[].name`); a list by its first item. */
function keysOf(value: unknown, prefix = ''): string[] {
  if (Array.isArray(value)) return value.length ? keysOf(value[0], `${prefix}[]`) : [];
  if (value === null || typeof value !== 'object') return [];
  // Custom fields are whatever the site keeps: their names are the site's, not the event's shape.
  if (prefix.endsWith('fields')) return [];
  return Object.entries(value).flatMap(([key, inner]) => {
    const path = prefix ? `${prefix}.${key}` : key;
    return [path, ...keysOf(inner, path)];
  });
}

test('the sample events have the shape of the events members\' changes send', async (t) => {
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  const h = await startHarness({ env: { OUTBOUND_ALLOW_PRIVATE: '1' } });
  t.after(() => h.close());
  const outbound: OutboundWebhooks = h.server.ctx.plugins.service('outboundWebhooks');
  const { connection } = outbound.createConnection({ name: 'Shapes', base_url: receiver.url });
  outbound.createDestination({ connection_id: connection.id, name: 'Everything', events: ['member.*'] });

  const members = h.server.ctx.members;
  const tag = { id: 91, name: 'Member', category: 'Membership' };
  const ada = await members.create({ email: 'ada@example.com', username: 'ada', role: 'subscriber', password: 'member password 0123', firstName: 'Ada', lastName: 'Lovelace', fields: { company: 'AE' }, tags: [tag], keapContactId: null });
  await members.update(ada.id, { profile: { firstName: 'Augusta', tags: [tag, { id: 93, name: 'VIP', category: 'Membership' }] }, role: 'member' });
  await members.changePassword(ada.id, 'another password 0123', 'account');
  await members.delete(ada.id);
  await h.settle();
  const types = ['member.created', 'member.tags_changed', 'member.updated', 'member.role_changed', 'member.password_changed', 'member.deleted'];
  await waitUntil(() => new Set(receiver.received.map((r) => (JSON.parse(r.body) as { type: string }).type)).size >= types.length);

  for (const type of types) {
    const real = receiver.received.map((r) => JSON.parse(r.body) as { type: string; data: unknown }).find((body) => body.type === type);
    assert.ok(real, `a ${type} event was delivered`);
    assert.deepEqual(keysOf(real.data).sort(), keysOf(sampleEvent(type).data).sort(), `${type}: the sample's keys are the real event's`);
  }
});
