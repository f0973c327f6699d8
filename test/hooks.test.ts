import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { HookRegistry, FilterError } from '../src/core/hooks.js';
import { captureLogs } from './support/logs.js';

interface TestActions {
  'member.created': [member: { id: number; email: string }];
  'thing.happened': [label: string, count: number];
}
interface TestFilters {
  'member.username': [username: string, context: { email: string }];
  'price': [amount: number];
}

function registry() {
  const logs = captureLogs();
  return { hooks: new HookRegistry<TestActions, TestFilters>(logs.logger), logs };
}

test('actions run in priority order, ties in the order they were added', async () => {
  const { hooks } = registry();
  const seen: string[] = [];
  hooks.addAction('thing.happened', () => void seen.push('p10-first'));
  hooks.addAction('thing.happened', () => void seen.push('p5'), { priority: 5 });
  hooks.addAction('thing.happened', () => void seen.push('p10-second'));
  hooks.addAction('thing.happened', () => void seen.push('p20'), { priority: 20 });
  hooks.addAction('thing.happened', () => void seen.push('p-1'), { priority: -1 });
  await hooks.doAction('thing.happened', 'x', 1);
  assert.deepEqual(seen, ['p-1', 'p5', 'p10-first', 'p10-second', 'p20']);
});

test('action handlers receive the arguments and async handlers finish before the next starts', async () => {
  const { hooks } = registry();
  const seen: string[] = [];
  hooks.addAction('thing.happened', async (label, count) => {
    await delay(20);
    seen.push(`slow ${label} ${count}`);
  });
  hooks.addAction('thing.happened', (label) => void seen.push(`fast ${label}`));
  await hooks.doAction('thing.happened', 'signup', 3);
  assert.deepEqual(seen, ['slow signup 3', 'fast signup']);
});

test('the function returned by addAction removes that handler only, and calling it twice is harmless', async () => {
  const { hooks } = registry();
  const seen: number[] = [];
  const remove = hooks.addAction('member.created', (m) => void seen.push(m.id));
  hooks.addAction('member.created', (m) => void seen.push(m.id * 100));
  remove();
  remove();
  await hooks.doAction('member.created', { id: 2, email: 'a@b.c' });
  assert.deepEqual(seen, [200]);
  assert.equal(hooks.hasAction('member.created'), true);
});

test('a throwing action handler is logged with its plugin name and the rest still run', async () => {
  const { hooks, logs } = registry();
  const seen: string[] = [];
  hooks.addAction('member.created', () => void seen.push('before'));
  hooks.addAction('member.created', async () => { throw new Error('plugin exploded'); }, { plugin: 'crm-extra' });
  hooks.addAction('member.created', () => void seen.push('after'));
  await hooks.doAction('member.created', { id: 1, email: 'a@b.c' });
  assert.deepEqual(seen, ['before', 'after']);
  const failure = logs.lines().find((l) => l.msg === 'action handler failed');
  assert.ok(failure, 'the failure is logged');
  assert.equal(failure.plugin, 'crm-extra');
  assert.equal(failure.action, 'member.created');
  assert.match(JSON.stringify(failure.err), /plugin exploded/);
});

test('filters thread the value through every handler in priority order, with the context', async () => {
  const { hooks } = registry();
  hooks.addFilter('member.username', (name) => `${name}-late`, { priority: 50 });
  hooks.addFilter('member.username', async (name, ctx) => {
    await delay(5);
    return `${name}@${ctx.email.split('@')[1]}`;
  });
  hooks.addFilter('member.username', (name) => name.toUpperCase(), { priority: 1 });
  assert.equal(await hooks.applyFilters('member.username', 'ann', { email: 'ann@example.com' }), 'ANN@example.com-late');
});

test('a filter with no handlers returns the value unchanged', async () => {
  const { hooks } = registry();
  assert.equal(await hooks.applyFilters('price', 42), 42);
  assert.equal(hooks.hasFilter('price'), false);
});

test('a throwing filter stops the pipeline with an error naming the filter and plugin', async () => {
  const { hooks } = registry();
  let laterRan = false;
  hooks.addFilter('price', () => { throw new Error('bad currency'); }, { plugin: 'shop' });
  hooks.addFilter('price', (p) => { laterRan = true; return p; }, { priority: 20 });
  await assert.rejects(hooks.applyFilters('price', 1), (err: unknown) => {
    assert.ok(err instanceof FilterError);
    assert.equal(err.plugin, 'shop');
    assert.match(err.message, /filter "price" failed in plugin "shop": bad currency/);
    return true;
  });
  assert.equal(laterRan, false);
});

test('removing a plugin removes all of its actions and filters', async () => {
  const { hooks } = registry();
  const seen: string[] = [];
  hooks.addAction('member.created', () => void seen.push('plugin'), { plugin: 'p1' });
  hooks.addAction('member.created', () => void seen.push('core'));
  hooks.addFilter('price', (p) => p * 2, { plugin: 'p1' });
  assert.equal(hooks.removePlugin('p1'), 2);
  await hooks.doAction('member.created', { id: 1, email: 'a@b.c' });
  assert.deepEqual(seen, ['core']);
  assert.equal(await hooks.applyFilters('price', 3), 3);
});

test('a handler removed while an action runs still completes that run, and is gone from the next', async () => {
  const { hooks } = registry();
  const seen: string[] = [];
  let removeSecond = () => {};
  hooks.addAction('thing.happened', () => { seen.push('first'); removeSecond(); });
  removeSecond = hooks.addAction('thing.happened', () => void seen.push('second'));
  await hooks.doAction('thing.happened', 'a', 1);
  await hooks.doAction('thing.happened', 'b', 2);
  assert.deepEqual(seen, ['first', 'second', 'first']);
});
