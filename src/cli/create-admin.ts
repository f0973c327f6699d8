import { ConfigError, loadConfig } from '../config.js';
import { createLogger, type Logger } from '../core/logger.js';
import { AdminInputError, createOrPromoteAdmin } from '../features/members/admin-setup.js';
import { buildContext, StartupError } from '../server.js';

export const CREATE_ADMIN_USAGE = `usage: memberhook create-admin --email <address> [--password <password>]

Creates the administrator, or gives an existing member admin rights, and sets its password (at least 10
characters). Without --password the password is read from ADMIN_PASSWORD, else asked for (or read from
standard input's first line). The email may also come from ADMIN_EMAIL. Uses the same settings (DATA_DIR, ...)
as the server; the server may be running.`;

export interface CreateAdminIo {
  env: Record<string, string | undefined>;
  cwd?: string;
  out(line: string): void;
  err(line: string): void;
  /** Asks for the password when no option or variable gives one. */
  readPassword?: () => Promise<string>;
  /** Defaults to warnings and errors as JSON on standard error, so standard output stays one line. */
  logger?: Logger;
}

interface CreateAdminArgs {
  email?: string;
  password?: string;
  help: boolean;
}

/**
 * `memberhook create-admin`: the first-run setup form's job from a shell (and the way back in when every
 * administrator has been lost). Returns the exit code: 0 done, 1 bad input or settings, with one line saying why.
 */
export async function runCreateAdmin(argv: string[], io: CreateAdminIo): Promise<number> {
  const fail = (message: string) => {
    io.err(`memberhook: create-admin: ${message}`);
    return 1;
  };
  let args: CreateAdminArgs;
  try {
    args = parseArgs(argv);
  } catch (err) {
    return fail(`${(err as Error).message} (see memberhook create-admin --help)`);
  }
  if (args.help) {
    io.out(CREATE_ADMIN_USAGE);
    return 0;
  }
  const email = (args.email ?? io.env.ADMIN_EMAIL ?? '').trim();
  if (!email) return fail('give the administrator\'s email with --email <address>');
  let password = args.password ?? (io.env.ADMIN_PASSWORD || undefined);
  if (password === undefined) {
    if (!io.readPassword) return fail('give the password with --password or ADMIN_PASSWORD');
    try {
      password = await io.readPassword();
    } catch (err) {
      if (err instanceof AdminInputError) return fail(err.message);
      throw err;
    }
  }

  let config;
  try {
    // ADMIN_EMAIL / ADMIN_PASSWORD are this command's input here, not the server's "ensure at start" setting.
    config = loadConfig({ ...io.env, ADMIN_EMAIL: undefined, ADMIN_PASSWORD: undefined }, io.cwd);
  } catch (err) {
    if (err instanceof ConfigError) return fail(err.message);
    throw err;
  }
  let ctx;
  try {
    ctx = await buildContext(config, { logger: io.logger ?? createLogger({ level: 'warn', destination: process.stderr }), console: io.out });
  } catch (err) {
    if (err instanceof StartupError) return fail(err.message);
    throw err;
  }
  try {
    const { member, outcome } = await createOrPromoteAdmin(ctx, { email, password });
    const what = {
      created: 'created',
      promoted: 'given admin rights and the new password',
      password_set: 'was already an administrator; password changed',
    }[outcome];
    io.out(`memberhook: administrator ${member.email} (member ${member.id}) ${what}`);
    return 0;
  } catch (err) {
    if (err instanceof AdminInputError) return fail(err.message);
    throw err;
  } finally {
    await ctx.plugins.stopAll();
    ctx.mailer.close();
    ctx.db.close();
  }
}

function parseArgs(argv: string[]): CreateAdminArgs {
  const args: CreateAdminArgs = { help: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      args.help = true;
      continue;
    }
    const match = /^--(email|password)(?:=(.*))?$/s.exec(arg);
    if (!match) throw new Error(`unknown argument "${arg}"`);
    const name = match[1] as 'email' | 'password';
    let value = match[2];
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new Error(`--${name} needs a value`);
    }
    if (args[name] !== undefined) throw new Error(`--${name} given twice`);
    args[name] = value;
  }
  return args;
}

/**
 * The password from standard input: asked for without echo on a terminal, else the first line of what is piped in.
 */
export function readPasswordFromStdin(prompt = 'Password for the administrator: '): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    return new Promise((resolve, reject) => {
      let data = '';
      stdin.setEncoding('utf8');
      stdin.on('data', (chunk: string) => {
        data += chunk;
      });
      stdin.on('end', () => resolve(data.split(/\r?\n/)[0] ?? ''));
      stdin.on('error', reject);
    });
  }
  return new Promise((resolve, reject) => {
    process.stderr.write(prompt);
    let typed = '';
    stdin.setRawMode(true);
    stdin.setEncoding('utf8');
    const done = (result: (() => void)) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
      result();
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return done(() => resolve(typed));
        if (ch === '\u0003') return done(() => reject(new AdminInputError('cancelled')));
        if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
        else if (ch >= ' ') typed += ch;
      }
    };
    stdin.on('data', onData);
    stdin.resume();
  });
}
