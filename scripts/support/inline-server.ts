/** BENCHMARK ONLY: memberhook with the work done inside each HTTP Post's request (see inline-mode.ts). */
import { loadConfig } from '../../src/config.js';
import { startServer } from '../../src/server.js';
import { runJobsInline } from './inline-mode.js';

const config = loadConfig();
const running = await startServer(config, { worker: { start: false } });
runJobsInline(running.ctx);
running.ctx.logger.warn('benchmark mode: jobs run inside the webhook request and the worker is off; not for production');
process.stdout.write(`memberhook (inline benchmark mode) listening on ${running.url}\n`);
const stop = () => void running.close().then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
