import { loadConfig } from '../../src/config.js';
import { startServer, type RunningServer, type StartOptions } from '../../src/server.js';
import { startKeapSandbox, type KeapSandbox, type KeapSandboxOptions } from '../../tools/keap-sandbox/index.js';
import { captureLogs } from './logs.js';
import { startSmtpServer } from './smtp.js';
import { tempDataDir, NO_PLUGINS_DIR } from './temp.js';

export const TEST_ACCESS_KEY = 'harness-access-key-0123456789-abcdefghijk';
export const TEST_API_TOKEN = 'harness-api-token-0123456789-abcdef';
export const SANDBOX_API_KEY = 'sandbox-api-key';

export interface Harness {
  sandbox: KeapSandbox;
  smtp: Awaited<ReturnType<typeof startSmtpServer>>;
  server: RunningServer;
  logs: ReturnType<typeof captureLogs>;
  /** What memberhook showed the operator on its console (a generated access key, the first-run setup link). */
  announced: string[];
  dataDir: string;
  env: Record<string, string>;
  /** Sends a Keap-style HTTP Post (form-encoded) with the right access key unless one is given. */
  post(params: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }>;
  api(path: string, init?: RequestInit): Promise<{ status: number; body: any }>;
  /** Waits until every job has finished (none queued, including retries waiting their turn, none running). */
  settle(timeoutMs?: number): Promise<void>;
  /** Stops memberhook (not the sandbox or SMTP server) and starts it again on the same data. */
  restart(options?: StartOptions): Promise<void>;
  close(): Promise<void>;
}

/** The real thing on loopback: the Keap sandbox, an SMTP server and memberhook configured against both. */
export async function startHarness(options: { env?: Record<string, string>; sandbox?: KeapSandboxOptions; start?: StartOptions } = {}): Promise<Harness> {
  const sandbox = await startKeapSandbox({ apiKeys: [SANDBOX_API_KEY], ...options.sandbox });
  const smtp = await startSmtpServer();
  const logs = captureLogs();
  const dataDir = tempDataDir();
  const env: Record<string, string> = {
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    PLUGINS_DIR: NO_PLUGINS_DIR,
    ACCESS_KEY: TEST_ACCESS_KEY,
    API_TOKEN: TEST_API_TOKEN,
    KEAP_API_URL: sandbox.url,
    KEAP_API_KEY: SANDBOX_API_KEY,
    KEAP_PASSWORD_FIELD: 'Password',
    SMTP_URL: smtp.url,
    MAIL_FROM: 'Site <site@example.test>',
    PUBLIC_URL: 'http://members.example.test',
    ...options.env,
  };
  const announced: string[] = [];
  const startOptions: StartOptions = { logger: logs.logger, console: (line) => announced.push(line), jobs: 'in-process', worker: { pollMs: 50 }, ...options.start };
  let server = await startServer(loadConfig(env), startOptions);
  const harness: Harness = {
    sandbox,
    smtp,
    get server() {
      return server;
    },
    logs,
    announced,
    dataDir,
    env,
    async post(params) {
      const res = await fetch(`${server.url}/`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ access_key: TEST_ACCESS_KEY, ...params }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    },
    async api(path, init = {}) {
      const res = await fetch(`${server.url}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${TEST_API_TOKEN}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
      });
      return { status: res.status, body: await res.json() };
    },
    async settle(timeoutMs = 30_000) {
      // Idle now is not enough: a job waiting out a retry is still unfinished work.
      const unfinished = server.ctx.db.prepare("SELECT count(*) FROM events WHERE status IN ('queued', 'processing')").pluck();
      const deadline = Date.now() + timeoutMs;
      while ((unfinished.get() as number) > 0) {
        if (Date.now() > deadline) throw new Error('jobs still unfinished after the settle timeout');
        await server.ctx.worker.whenIdle();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async restart(restartOptions) {
      await server.close();
      server = await startServer(loadConfig(env), { ...startOptions, ...restartOptions });
    },
    async close() {
      await server.close();
      await smtp.close();
      await sandbox.close();
    },
  };
  return harness;
}

/** Runs `fn` against a fresh harness and closes it afterwards, whatever `fn` did. */
export async function withHarness(fn: (h: Harness) => Promise<void>, options: Parameters<typeof startHarness>[0] = {}): Promise<void> {
  const h = await startHarness(options);
  try {
    await fn(h);
  } finally {
    await h.close();
  }
}
