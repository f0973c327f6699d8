/** memberhook as its own process (the built dist/), the way it runs in production; for the bench and soak scripts. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KeapSandbox } from '../../tools/keap-sandbox/index.js';

export const ACCESS_KEY = 'bench-access-key-0123456789-abcdefghijklmn';
export const KEAP_KEY = 'bench-keap-key';
/** Keap's published limits for one key (KEAP.md), which the sandbox enforces and the client obeys. */
export const LIMITS = { perSecond: 10, perMinute: 240 };

export interface Memberhook {
  url: string;
  dataDir: string;
  child: ChildProcess;
  peakRssMb(): number;
  /** resident memory now, MB */
  rssMb(): number;
  /** CPU time (user + system) the process has used so far, ms (the kernel counts in clock ticks, 10 ms each). */
  cpuMs(): number;
  /** Stops the process; deletes its data folder unless it was given one (`options.dataDir`). */
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface StartOptions {
  /** Run on this existing data folder (a seeded database) instead of a new temporary one; `stop` leaves it. */
  dataDir?: string;
  /** Benchmark only: run the jobs inside each post's request (scripts/support/inline-server.ts), WP Fusion style. */
  inline?: boolean;
  /** Another built checkout to run memberhook from (its dist/), to measure a change against it in the same run. */
  checkout?: string;
}

/**
 * Node's arguments and environment as `npm start` gives them (package.json's start script, `[NAME=value ...] node
 * <args>`), so the benchmarks measure memberhook as users run it, flags included.
 */
export function startCommand(checkout: string): { args: string[]; env: Record<string, string> } {
  const script = (JSON.parse(readFileSync(join(checkout, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const words = script.trim().split(/\s+/);
  const env: Record<string, string> = {};
  while (words.length > 0 && /^[A-Z_][A-Z0-9_]*=/.test(words[0]!)) {
    const [name, ...value] = words.shift()!.split('=');
    env[name!] = value.join('=');
  }
  const [program, ...args] = words;
  if (program !== 'node' || args.length === 0) throw new Error(`package.json's start script is not "[NAME=value ...] node <args>": ${script}`);
  return { args, env };
}

export async function startMemberhook(sandbox: KeapSandbox, extraEnv: Record<string, string> = {}, options: StartOptions = {}): Promise<Memberhook> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'memberhook-bench-'));
  const port = await freePort();
  const start = options.inline ? { args: ['--import', 'tsx', 'scripts/support/inline-server.ts'], env: {} } : startCommand(options.checkout ?? '.');
  const child = spawn(process.execPath, start.args, {
    ...(options.checkout ? { cwd: options.checkout } : {}),
    env: {
      ...process.env,
      ...start.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      ACCESS_KEY,
      KEAP_API_URL: sandbox.url,
      KEAP_API_KEY: KEAP_KEY,
      KEAP_RATE_PER_SECOND: String(LIMITS.perSecond),
      KEAP_RATE_PER_MINUTE: String(LIMITS.perMinute),
      LOG_LEVEL: 'warn',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`memberhook exited with ${code}`)));
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('listening on')) resolve();
    });
  });
  const peakRssMb = () => {
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
  };
  const rssMb = () => {
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
  };
  const ticksPerSecond = 100; // USER_HZ, 100 on Linux
  const cpuMs = () => {
    // Fields after the command name (which sits in parentheses and may hold spaces): utime and stime are 14th and 15th.
    const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
  };
  return {
    rssMb,
    cpuMs,
    url: `http://127.0.0.1:${port}`,
    dataDir,
    child,
    peakRssMb,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

