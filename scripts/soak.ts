/**
 * npm run soak: memberhook under a steady churn of Keap posts for a long time (30 minutes by default), to show
 * that memory and latency stay flat and the queue does not grow. memberhook runs as its own process (dist/);
 * the Keap sandbox (held to Keap's key limits) and the load run here. Every minute it samples memberhook's
 * resident memory, the ack latency of that minute's posts, the queue depth and the members count, then writes
 * docs/soak.json and the chart docs/soak.svg shown in the README.
 *
 *   npm run soak                            # 30 minutes at 1.2 posts/s
 *   SOAK_MINUTES=5 SOAK_RATE=1 npm run soak # a shorter look
 *
 * The rate is set so the Keap calls it causes (about 2.8 per post for this mix) stay under the 240 a minute one
 * key allows: a faster steady rate would only grow the queue, which no design can avoid.
 */
import Database from 'better-sqlite3';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { startKeapSandbox } from '../tools/keap-sandbox/index.js';
import { ACCESS_KEY, KEAP_KEY, LIMITS, startMemberhook } from './support/memberhook-process.js';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 30);
const RATE = Number(process.env.SOAK_RATE ?? 1.2);
const OUT_DIR = process.env.SOAK_OUT ?? 'docs';
const TAGS = [91, 93, 95, 97];

interface Sample {
  minute: number;
  rssMb: number;
  posts: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  queueDepth: number;
  members: number;
  failed: number;
  keapCalls: number;
  keap429: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  const sandbox = await startKeapSandbox({ apiKeys: [KEAP_KEY], limits: LIMITS });
  const mh = await startMemberhook(sandbox, { KEAP_PASSWORD_FIELD: 'Password' });
  const db = new Database(join(mh.dataDir, 'memberhook.db'), { readonly: true });
  db.pragma('busy_timeout = 2000');
  const depth = db.prepare("SELECT count(*) FROM events WHERE status IN ('queued', 'processing')").pluck();
  const members = db.prepare('SELECT count(*) FROM members').pluck();
  const failed = db.prepare("SELECT count(*) FROM events WHERE status IN ('failed', 'dead')").pluck();

  const contacts: number[] = [];
  let serial = 0;
  const post = async (body: string): Promise<number> => {
    const started = performance.now();
    const res = await fetch(`${mh.url}/`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `${body}&access_key=${ACCESS_KEY}` });
    await res.arrayBuffer();
    if (res.status >= 300) throw new Error(`post answered ${res.status}: ${body}`);
    return performance.now() - started;
  };
  /** The churn: 40 % new members, 40 % profile changes, 20 % tag changes, on contacts chosen at random. */
  const nextPost = (): string => {
    const roll = Math.random();
    if (contacts.length < 20 || roll < 0.4) {
      serial += 1;
      const id = sandbox.state.addContact({ given_name: `Soak${serial}`, family_name: 'Member', email: `soak${serial}@example.test` }).id;
      contacts.push(id);
      return `contactId=${id}&wpf_action=add&send_notification=true`;
    }
    const id = contacts[Math.floor(Math.random() * contacts.length)]!;
    if (roll < 0.8) {
      sandbox.state.updateContact(id, { given_name: `Soak${serial}-${Math.floor(Math.random() * 1000)}` });
      return `contactId=${id}&wpf_action=update`;
    }
    const tag = TAGS[Math.floor(Math.random() * TAGS.length)]!;
    const contact = sandbox.state.contact(id)!;
    if (contact.tag_ids.includes(tag)) sandbox.state.removeTag(id, tag);
    else sandbox.state.applyTag(id, tag);
    return `contactId=${id}&wpf_action=update_tags`;
  };

  const samples: Sample[] = [];
  const intervalMs = 1000 / RATE;
  const start = performance.now();
  let requestsSeen = 0;
  console.log(`soak: ${MINUTES} min at ${RATE} posts/s against the sandbox at ${LIMITS.perSecond}/s and ${LIMITS.perMinute}/min`);
  for (let minute = 1; minute <= MINUTES; minute++) {
    const latencies: number[] = [];
    const inFlight: Array<Promise<void>> = [];
    const minuteEnd = start + minute * 60_000;
    let due = performance.now();
    while (performance.now() < minuteEnd) {
      inFlight.push(post(nextPost()).then((ms) => void latencies.push(ms)));
      due += intervalMs;
      await delay(Math.max(0, due - performance.now()));
    }
    await Promise.all(inFlight);
    latencies.sort((a, b) => a - b);
    const calls = sandbox.state.requests.slice(requestsSeen);
    requestsSeen = sandbox.state.requests.length;
    const sample: Sample = {
      minute,
      rssMb: Math.round(mh.rssMb() * 10) / 10,
      posts: latencies.length,
      p50Ms: Math.round(percentile(latencies, 50) * 10) / 10,
      p99Ms: Math.round(percentile(latencies, 99) * 10) / 10,
      maxMs: Math.round((latencies.at(-1) ?? 0) * 10) / 10,
      queueDepth: depth.get() as number,
      members: members.get() as number,
      failed: failed.get() as number,
      keapCalls: calls.length,
      keap429: calls.filter((r) => r.status === 429).length,
    };
    samples.push(sample);
    console.log(
      `min ${String(minute).padStart(2)}: RSS ${sample.rssMb} MB, ${sample.posts} posts, ack p50 ${sample.p50Ms} ms p99 ${sample.p99Ms} ms, ` +
        `queue ${sample.queueDepth}, members ${sample.members}, failed ${sample.failed}, Keap calls ${sample.keapCalls} (${sample.keap429} x 429)`,
    );
  }
  db.close();
  const peak = mh.peakRssMb();
  await mh.stop();
  await sandbox.close();

  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(join(OUT_DIR, 'soak.json'), `${JSON.stringify({ minutes: MINUTES, rate: RATE, limits: LIMITS, peakRssMb: peak, samples }, null, 2)}\n`);
  writeFileSync(join(OUT_DIR, 'soak.svg'), chart(samples));
  const first = samples[0]!;
  const last = samples.at(-1)!;
  console.log(`\nRSS first/last minute: ${first.rssMb} / ${last.rssMb} MB (peak ${peak.toFixed(0)} MB); ack p99 first/last: ${first.p99Ms} / ${last.p99Ms} ms; queue at the end: ${last.queueDepth}`);
  console.log(`wrote ${join(OUT_DIR, 'soak.json')} and ${join(OUT_DIR, 'soak.svg')}`);
}

/** Two small line charts side by side: resident memory (MB) and ack latency p50/p99 (ms), per minute. */
function chart(samples: Sample[]): string {
  const width = 360;
  const height = 200;
  const pad = { left: 44, right: 12, top: 28, bottom: 30 };
  const panel = (x0: number, title: string, series: Array<{ label: string; color: string; values: number[] }>) => {
    const max = Math.max(1, ...series.flatMap((s) => s.values)) * 1.15;
    const n = Math.max(2, samples.length);
    const x = (i: number) => x0 + pad.left + (i / (n - 1)) * (width - pad.left - pad.right);
    const y = (v: number) => pad.top + (1 - v / max) * (height - pad.top - pad.bottom);
    const ticks = [0, max / 2, max].map((v) => `<text x="${x0 + pad.left - 6}" y="${y(v) + 4}" text-anchor="end">${v < 10 ? v.toFixed(1) : v.toFixed(0)}</text>`);
    const lines = series.map(
      (s, k) =>
        `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>` +
        `<text x="${x0 + pad.left + 8 + k * 70}" y="${pad.top + 12}" fill="${s.color}">${s.label}</text>`,
    );
    return `<g>
  <text x="${x0 + pad.left}" y="16" font-weight="600">${title}</text>
  <line x1="${x0 + pad.left}" y1="${pad.top}" x2="${x0 + pad.left}" y2="${height - pad.bottom}" stroke="#cbd2d9"/>
  <line x1="${x0 + pad.left}" y1="${height - pad.bottom}" x2="${x0 + width - pad.right}" y2="${height - pad.bottom}" stroke="#cbd2d9"/>
  ${ticks.join('\n  ')}
  <text x="${x0 + pad.left}" y="${height - 8}">minute 1</text>
  <text x="${x0 + width - pad.right}" y="${height - 8}" text-anchor="end">minute ${samples.length}</text>
  ${lines.join('\n  ')}
</g>`;
  };
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width * 2}" height="${height}" viewBox="0 0 ${width * 2} ${height}" font-family="system-ui, sans-serif" font-size="11" fill="#1f2933">
<rect width="100%" height="100%" fill="#fff"/>
${panel(0, 'memberhook resident memory (MB)', [{ label: 'RSS', color: '#2f6fde', values: samples.map((s) => s.rssMb) }])}
${panel(width, 'ack latency (ms)', [
  { label: 'p50', color: '#067647', values: samples.map((s) => s.p50Ms) },
  { label: 'p99', color: '#b54708', values: samples.map((s) => s.p99Ms) },
])}
</svg>
`;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
