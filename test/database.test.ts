import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { openDatabase, readMigrations, MIGRATIONS_DIR } from '../src/core/db.js';
import { tempDataDir } from './support/temp.js';

test('a new database gets every migration, a second start applies nothing', () => {
  const file = join(tempDataDir(), 'db', 'memberhook.db');
  const first = openDatabase({ filename: file });
  const all = readMigrations(MIGRATIONS_DIR);
  assert.ok(all.length >= 1);
  assert.deepEqual(first.applied.map((m) => m.version), all.map((m) => m.version));
  assert.equal(first.db.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(first.db.pragma('foreign_keys', { simple: true }), 1);
  first.db.close();
  const second = openDatabase({ filename: file });
  assert.deepEqual(second.applied, []);
  assert.equal(second.db.pragma('user_version', { simple: true }), all.at(-1)!.version);
  second.db.close();
});

test('a failing migration is rolled back whole and leaves the database at the last good version', () => {
  const dir = tempDataDir();
  const migrations = join(dir, 'migrations');
  mkdirSync(migrations);
  writeFileSync(join(migrations, '001_ok.sql'), 'CREATE TABLE a (x INTEGER);');
  writeFileSync(join(migrations, '002_broken.sql'), 'CREATE TABLE b (y INTEGER); INSERT INTO nowhere VALUES (1);');
  const file = join(dir, 'x.db');
  assert.throws(() => openDatabase({ filename: file, migrationsDir: migrations }), /no such table: nowhere/);
  const db = new Database(file);
  assert.equal(db.pragma('user_version', { simple: true }), 1);
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
  assert.deepEqual(tables, ['a']);
  db.close();
});

test('the schema holds the member invariants: unique email in any case, unique username and contact id', () => {
  const { db } = openDatabase({ filename: ':memory:' });
  const subscriber = db.prepare("SELECT id FROM roles WHERE slug = 'subscriber'").pluck().get();
  const insert = db.prepare('INSERT INTO members (email, username, role_id, keap_contact_id) VALUES (?, ?, ?, ?)');
  insert.run('Ann@Example.com', 'ann', subscriber, 101);
  assert.throws(() => insert.run('ann@example.COM', 'ann2', subscriber, 102), /UNIQUE constraint failed: members.email/);
  assert.throws(() => insert.run('other@example.com', 'ANN', subscriber, 103), /UNIQUE constraint failed: members.username/);
  assert.throws(() => insert.run('third@example.com', 'third', subscriber, 101), /UNIQUE constraint failed: members.keap_contact_id/);
  assert.throws(() => insert.run('x@example.com', 'x', 9999, null), /FOREIGN KEY constraint failed/);
  assert.equal(db.prepare('SELECT count(*) FROM members').pluck().get(), 1);
  db.close();
});

test('the seeded roles are administrator (admin rights), subscriber and member', () => {
  const { db } = openDatabase({ filename: ':memory:' });
  const roles = db.prepare('SELECT slug, is_admin, webhook_assignable FROM roles ORDER BY id').all();
  assert.deepEqual(roles, [
    { slug: 'administrator', is_admin: 1, webhook_assignable: 0 },
    { slug: 'subscriber', is_admin: 0, webhook_assignable: 1 },
    { slug: 'member', is_admin: 0, webhook_assignable: 1 },
  ]);
  db.close();
});

test('a role held by members cannot be deleted, and deleting a member removes its tags', () => {
  const { db } = openDatabase({ filename: ':memory:' });
  const memberRole = db.prepare("SELECT id FROM roles WHERE slug = 'member'").pluck().get();
  const id = db.prepare('INSERT INTO members (email, username, role_id) VALUES (?, ?, ?)').run('a@b.co', 'a', memberRole).lastInsertRowid;
  db.prepare('INSERT INTO member_tags (member_id, tag_id, name) VALUES (?, ?, ?)').run(id, 7, 'Customer');
  assert.throws(() => db.prepare("DELETE FROM roles WHERE slug = 'member'").run(), /FOREIGN KEY constraint failed/);
  db.prepare('DELETE FROM members WHERE id = ?').run(id);
  assert.equal(db.prepare('SELECT count(*) FROM member_tags').pluck().get(), 0);
  db.close();
});

test('only one queued event may hold a dedupe key at a time', () => {
  const { db } = openDatabase({ filename: ':memory:' });
  const insert = db.prepare("INSERT INTO events (source, action, contact_id, status, dedupe_key) VALUES ('http_post', 'add', 101, ?, 'add:101')");
  insert.run('queued');
  assert.throws(() => insert.run('queued'), /UNIQUE constraint failed/);
  insert.run('done');
  insert.run('processing');
  assert.equal(db.prepare('SELECT count(*) FROM events').pluck().get(), 3);
  db.close();
});
