/**
 * The yardsticks `npm run bench` measures beside memberhook, in the same run and under the same load, so its figures
 * are ratios that hold from one machine to the next:
 * - `node-http`: Node's bare `http` server that reads the form, checks the access key in constant time and answers
 *   JSON, the ceiling of any Node receiver;
 * - `node-http-sqlite`: the same, plus one row per post in a SQLite WAL database (a commit each, synchronous=NORMAL),
 *   the least any receiver that keeps what it acknowledges must do;
 * - `hook-json-sqlite`: for `npm run bench:hooks`, a JSON body (a Keap REST hook delivery) parsed and kept whole in
 *   one such row.
 * Each runs as its own process, as memberhook does.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { freePort } from './memberhook-process.js';

export type ReferenceKind = 'node-http' | 'node-http-sqlite' | 'hook-json-sqlite';

const SOURCE = `
import { createServer } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
const kind = process.env.REF_KIND;
const digest = (text) => createHash('sha256').update(text).digest();
const key = digest(process.env.ACCESS_KEY);
const now = () => new Date().toISOString();
let db;
if (kind !== 'node-http') {
  const { default: Database } = await import(process.env.SQLITE_DRIVER);
  db = new Database(process.env.REF_DB);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
}
// What each kind does with a request body: [status, answer].
let answer;
if (kind === 'hook-json-sqlite') {
  db.exec('CREATE TABLE deliveries (id INTEGER PRIMARY KEY, event_key TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO deliveries (event_key, body, created_at) VALUES (?, ?, ?)');
  answer = (text) => [200, { ok: true, event_id: Number(insert.run(String(JSON.parse(text).event_key), text, now()).lastInsertRowid) }];
} else {
  let keep = () => 0;
  if (kind === 'node-http-sqlite') {
    db.exec('CREATE TABLE posts (id INTEGER PRIMARY KEY, contact_id INTEGER NOT NULL, action TEXT NOT NULL, created_at TEXT NOT NULL)');
    const insert = db.prepare('INSERT INTO posts (contact_id, action, created_at) VALUES (?, ?, ?)');
    keep = (form) => Number(insert.run(Number(form.get('contactId')), String(form.get('wpf_action')), now()).lastInsertRowid);
  }
  answer = (text) => {
    const form = new URLSearchParams(text);
    const ok = timingSafeEqual(key, digest(form.get('access_key') ?? ''));
    return ok ? [200, { ok: true, event_id: keep(form), status: 'queued' }] : [403, { ok: false, error: 'invalid access key' }];
  };
}
createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const [status, value] = answer(Buffer.concat(chunks).toString());
    const body = JSON.stringify(value);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}).listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('listening\\n'));
`;

export interface ReferenceServer {
  url: string;
  peakRssMb(): number;
  stop(): Promise<void>;
}

export async function startReferenceServer(kind: ReferenceKind, accessKey: string): Promise<ReferenceServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'memberhook-reference-'));
  const driver = pathToFileURL(createRequire(import.meta.url).resolve('better-sqlite3')).href;
  const child = spawn(process.execPath, ['--input-type=module', '-e', SOURCE], {
    env: { ...process.env, REF_KIND: kind, ACCESS_KEY: accessKey, PORT: String(port), REF_DB: join(dir, 'reference.db'), SQLITE_DRIVER: driver },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the ${kind} reference server exited with ${code}`)));
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('listening')) resolve();
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    peakRssMb: () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
