import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { after } from 'node:test';

/** The repository root: the child runs `src/main.ts` from here, through tsx, as `npm start` would run dist/. */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ChildServer {
  /** e.g. http://127.0.0.1:41234, as the server printed it. */
  url: string;
  pid: number;
  process: ChildProcess;
  /** Resolves when the process has exited (by itself or killed). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * SIGKILL, sent at once (synchronously, so a caller can kill at an exact moment, e.g. inside a fake server's
   * callback); the promise resolves once the process is gone. No shutdown code runs in the child.
   */
  killHard(): Promise<void>;
  /** SIGTERM: the graceful shutdown `npm start` gets from a process manager. */
  stop(): Promise<void>;
  /** Everything the child wrote to stderr (and stdout lines that are not JSON logs), for failure messages. */
  output(): string;
}

const running = new Set<ChildProcess>();
// A failing test must not leave a server behind holding the temp folder.
after(() => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Starts memberhook as its own process (`node --import tsx src/main.ts serve`) with `env` on top of this
 * process's environment, and resolves once it prints the address it listens on. Set `PORT=0` and `HOST` in
 * `env`: the printed address has the port the system picked.
 */
export async function startChildServer(env: Record<string, string>, options: { timeoutMs?: number } = {}): Promise<ChildServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/main.ts'), 'serve'], {
    cwd: ROOT,
    env: { ...process.env, NODE_OPTIONS: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let out = '';
  let stdoutBuffer = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`memberhook did not start within ${options.timeoutMs ?? 30_000} ms:\n${out}`));
    }, options.timeoutMs ?? 30_000);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`memberhook exited during start (code ${code}, signal ${signal}):\n${out}`));
    });
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdoutBuffer += chunk;
      let newline: number;
      while ((newline = stdoutBuffer.indexOf('\n')) !== -1) {
        const line = stdoutBuffer.slice(0, newline);
        stdoutBuffer = stdoutBuffer.slice(newline + 1);
        if (!line.startsWith('{')) out += `${line}\n`;
        else if (/"level":(50|60)/.test(line)) out += `${line}\n`; // errors and fatals are worth showing on failure
        const match = /^memberhook listening on (\S+)/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]!);
        }
      }
    });
  });

  return {
    url,
    pid: child.pid!,
    process: child,
    exited,
    killHard() {
      child.kill('SIGKILL');
      return exited.then(() => undefined);
    },
    stop() {
      child.kill('SIGTERM');
      return exited.then(() => undefined);
    },
    output: () => out,
  };
}

/**
 * Opens memberhook's database read-only from outside the server process, as an operator's `sqlite3` would;
 * the busy timeout rides out the server's write transactions. Close it before the folder is removed.
 */
export function openDatabaseReadOnly(dataDir: string): Database.Database {
  const db = new Database(join(dataDir, 'memberhook.db'), { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  return db;
}

/** Polls `condition` (never sleeps blindly) until it holds or `timeoutMs` passes; the error says what was awaited. */
export async function waitFor<T>(what: string, condition: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
