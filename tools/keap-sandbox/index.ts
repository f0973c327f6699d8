/**
 * The Keap sandbox: a local stand-in for Keap's REST API (v1 and v2 contact endpoints), its OAuth token endpoint,
 * its throttles and quotas, and injectable failures. Tests start it on a free loopback port; `npm run keap-sandbox`
 * starts it for trying memberhook without a Keap account.
 *
 * Choices where Keap's documents leave room (so a reader knows what is modelled and what is a guess):
 * - Shapes follow the two spec files; error bodies follow each version's `Error` schema (see error-bodies.ts).
 * - A contact PATCH follows each spec's words: v1 "updates a contact with only the values provided" (custom_fields
 *   merge by id, email_addresses replace per slot); v2 says of each array "Any item not listed here will be removed
 *   if it already exists", so a v2 PATCH listing one custom field clears every other (and email_addresses replace).
 *   A client that writes one field must use v1; the sandbox makes a v2 write wipe, so a test catches it.
 * - Throttle headers and what a 429 counts: see limits.ts. Injected failures and seeded chaos: see faults.ts.
 * - v1 `since` is inclusive; v1 lists always carry `next` (stop on an empty page); v2 omits `next_page_token` on
 *   the last page.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createKeapSandboxApp, SANDBOX_DEFAULTS, type KeapSandboxOptions } from './app.js';
import { SEED } from './seed.js';
import type { ChaosOptions, SandboxFault } from './faults.js';
import type { SandboxState } from './state.js';

export { createKeapSandboxApp, SANDBOX_DEFAULTS, type KeapSandboxApp, type KeapSandboxOptions } from './app.js';
export { SEED } from './seed.js';
export { THROTTLED_BODY, type GatewayErrorShape } from './error-bodies.js';
export { seededRandom, type ChaosKind, type ChaosOptions, type SandboxFault } from './faults.js';
export { KEAP_KEY_LIMITS, type RateLimits } from './limits.js';
export {
  SandboxState,
  SandboxStateError,
  type CredentialKind,
  type EmailField,
  type NewSandboxContact,
  type RecordedRequest,
  type SandboxContact,
  type SandboxContactChanges,
  type SandboxCustomField,
  type SandboxEmailAddress,
  type SandboxFieldType,
  type SandboxTag,
  type SandboxTagCategory,
} from './state.js';

export interface KeapSandbox {
  /** Everything up to /crm, e.g. http://127.0.0.1:45678/crm (what KEAP_API_URL points at). */
  url: string;
  /** e.g. http://127.0.0.1:45678/token */
  tokenUrl: string;
  /** The authorize page stand-in, e.g. http://127.0.0.1:45678/app/oauth/authorize (approves at once). */
  authorizeUrl: string;
  /** In-memory data, inspectable and changeable by tests. */
  state: SandboxState;
  /** Make an OAuth2 authorization code, as Keap's authorize page would after a user approves. */
  issueAuthorizationCode(redirectUri?: string): string;
  /**
   * The next `count` authenticated API requests (not /token) answer `status` with a Keap-shaped error body (a 429
   * also says the per-second window is used up; `retryAfterSeconds` adds a Retry-After header).
   */
  failNext(count: number, status: number, options?: { retryAfterSeconds?: number }): void;
  /**
   * The next `count` authenticated API requests (those matching `method` and `path` when given, e.g. PATCH
   * `/crm/rest/v2/contacts/105`) get `fault`: an error status, a slow answer or a dropped connection.
   */
  troubleNext(count: number, fault: SandboxFault, options?: { path?: string | RegExp; method?: string }): void;
  /** Seeded random misbehaviour for every following API request (null stops it); queued faults come first. */
  chaos(options: ChaosOptions | null): void;
  /** Every access token issued so far stops working (401), as at expiry. */
  expireAccessTokens(): void;
  close(): Promise<void>;
}

export async function startKeapSandbox(options: KeapSandboxOptions = {}): Promise<KeapSandbox> {
  const { app, state, oauth, faults } = createKeapSandboxApp(options);
  const host = options.host ?? '127.0.0.1';
  const server = createServer(app);
  await listen(server, options.port ?? 0, host);
  const { port } = server.address() as AddressInfo;
  const origin = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    url: `${origin}/crm`,
    tokenUrl: `${origin}/token`,
    authorizeUrl: `${origin}/app/oauth/authorize`,
    state,
    issueAuthorizationCode: (redirectUri) => oauth.issueAuthorizationCode(redirectUri),
    failNext: (count, status, failOptions) => faults.failNext(count, status, failOptions),
    troubleNext: (count, fault, troubleOptions) => faults.troubleNext(count, fault, troubleOptions),
    chaos: (chaosOptions) => faults.chaos(chaosOptions),
    expireAccessTokens: () => oauth.expireAccessTokens(),
    close: () => closeServer(server),
  };
}

/** `npm run keap-sandbox`: serve the sandbox on KEAP_SANDBOX_PORT (default 4010) until SIGINT or SIGTERM. */
/**
 * The command that starts memberhook against this sandbox, as the README's trial prints it (a test holds the two
 * to each other): the password field is named, so generated passwords are written back and Alan's is read.
 */
export function trialCommand(url: string): string[] {
  return [
    'ACCESS_KEY=try-it-out-access-key-0123456789abcdef \\',
    `KEAP_API_URL=${url} KEAP_API_KEY=${SANDBOX_DEFAULTS.apiKey} \\`,
    'KEAP_PASSWORD_FIELD=Password API_TOKEN=try-it-out-api-token-0123456789 npm start',
  ];
}

/** The seeded contacts and what each one shows in a trial. */
export const SEEDED_CONTACTS = [
  { id: SEED.contacts.ada, who: 'Ada Lovelace: two emails (the first is used), tags Member, VIP and Newsletter, a favourite colour' },
  { id: SEED.contacts.grace, who: 'Grace Hopper: a Username field (ghopper), so her username is not her email' },
  { id: SEED.contacts.alan, who: 'Alan Turing: a Password field already set (Enigma-1912), which becomes his password' },
  { id: SEED.contacts.noEmail, who: 'Nobody Noemail: no email address, so add fails for good with the reason' },
  { id: SEED.contacts.margaret, who: 'Margaret: only a first name and an email, no tags' },
] as const;

export async function runKeapSandboxCli(env: Record<string, string | undefined> = process.env): Promise<void> {
  const rawPort = env.KEAP_SANDBOX_PORT ?? '4010';
  const port = Number(rawPort);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`KEAP_SANDBOX_PORT must be a port number (got ${JSON.stringify(rawPort)})`);
  const sandbox = await startKeapSandbox({ port, host: '127.0.0.1' });
  const { clientId, clientSecret } = SANDBOX_DEFAULTS.oauthClient;
  process.stdout.write(
    [
      `Keap sandbox listening on ${sandbox.url}`,
      `  API key (X-Keap-API-Key): ${SANDBOX_DEFAULTS.apiKey}`,
      `  OAuth client id:          ${clientId}`,
      `  OAuth client secret:      ${clientSecret}`,
      `  token URL:                ${sandbox.tokenUrl}`,
      `  authorize URL:            ${sandbox.authorizeUrl}`,
      '',
      'Point memberhook at it (the README\'s trial, in another terminal):',
      ...trialCommand(sandbox.url).map((line) => `  ${line}`),
      '',
      'Seeded contacts (ids for contactId):',
      ...SEEDED_CONTACTS.map((c) => `  ${c.id}  ${c.who}`),
      '',
    ].join('\n'),
  );
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    sandbox.close().then(
      () => process.stdout.write('Keap sandbox stopped\n'),
      (err: unknown) => {
        process.stderr.write(`Keap sandbox: failed to stop: ${String(err)}\n`);
        process.exitCode = 1;
      },
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    // Keep-alive connections (fetch keeps them) would hold close() open until they time out.
    server.closeAllConnections();
  });
}
