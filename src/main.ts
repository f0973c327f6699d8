#!/usr/bin/env node
import { loadConfig, ConfigError } from './config.js';
import { startServer, StartupError } from './server.js';

const USAGE = `usage: memberhook [command]

commands:
  serve          start the server (the default)
  create-admin   create an administrator or give a member admin rights (--email, --password; see create-admin --help)

(The Keap sandbox for trials and tests is \`npm run keap-sandbox\` in a source checkout.)`;

async function serve(): Promise<void> {
  const config = loadConfig();
  const running = await startServer(config);
  running.ctx.logger.info({ url: running.url, dataDir: config.dataDir }, 'memberhook is listening');
  process.stdout.write(`memberhook listening on ${running.url} (data in ${config.dataDir})\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    running.ctx.logger.info({ signal }, 'shutting down');
    running.close().then(
      () => process.exit(0),
      (err: unknown) => {
        running.ctx.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

async function main(argv: string[]): Promise<void> {
  const command = argv[0] ?? 'serve';
  switch (command) {
    case 'serve':
      return serve();
    case 'create-admin': {
      const { runCreateAdmin, readPasswordFromStdin } = await import('./cli/create-admin.js');
      const write = (stream: NodeJS.WriteStream) => (line: string) => stream.write(`${line}\n`);
      process.exitCode = await runCreateAdmin(argv.slice(1), { env: process.env, out: write(process.stdout), err: write(process.stderr), readPassword: () => readPasswordFromStdin() });
      return;
    }
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return;
    default:
      process.stderr.write(`unknown command "${command}"\n${USAGE}\n`);
      process.exitCode = 2;
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  // Configuration and startup problems are the operator's to fix: one line, no stack.
  if (err instanceof ConfigError || err instanceof StartupError) {
    process.stderr.write(`memberhook: ${err.message}\n`);
  } else {
    process.stderr.write(`memberhook: failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  }
  process.exit(1);
});
