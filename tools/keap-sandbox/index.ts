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
 * - REST hooks (hooks.ts, routes-hooks.ts): keys are "1", "2", ...; one subscription per event key (a second is a
 *   400 naming the first). The handshake is a POST with `X-Hook-Secret` and no body, made before the create,
 *   update (new hookUrl) or verify call answers; only a 200 echoing the secret verifies, and a failed handshake
 *   leaves the status as it was. delayedVerify takes the last secret sent to that hook, once: 400 without the
 *   header, 403 for another value, 404 for no such hook (the spec documents neither 400 nor 404 there).
 * - Deliveries: `{event_key, object_type, object_keys: [{id, apiUrl: "", timestamp}]}` with `apiUrl` empty (KEAP.md:
 *   it "may be missing or empty"); one entry per object per batch (a contact edited twice in the window is one entry
 *   with the later timestamp). A tag put on or taken off a contact is `contactGroup.applied` / `contactGroup.removed`
 *   with `object_type: "contact"` and the contact's id: Keap documents no other shape for these, the documented
 *   entry has one id, and the contact is the object a receiver must re-read (its tags); a receiver should check
 *   `object_type` before taking an id for a contact. Tags changed through a contact's `tag_ids` are no contact.edit.
 *   A new tag is `contactGroup.add` (object_type contactGroup, the tag's id).
 * - Retries wait the longest Keap would (60 s, then 5 and 30 min; `hookRetryDelaysMs`); 2xx and 3xx are success; a
 *   batch waiting when its hook goes Inactive, is deleted or changes event key is dropped (recorded as `dropped`),
 *   and changes made while a hook is not Verified are never sent: the poller's job.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createKeapSandboxApp, SANDBOX_DEFAULTS, type KeapSandboxOptions } from './app.js';
import { SEED } from './seed.js';
import type { ChaosOptions, SandboxFault } from './faults.js';
import type { SandboxHooks } from './hooks.js';
import type { SandboxState } from './state.js';

export { createKeapSandboxApp, SANDBOX_DEFAULTS, type KeapSandboxApp, type KeapSandboxOptions } from './app.js';
export { SEED } from './seed.js';
export { THROTTLED_BODY, type GatewayErrorShape } from './error-bodies.js';
export { seededRandom, type ChaosKind, type ChaosOptions, type SandboxFault } from './faults.js';
export { KEAP_KEY_LIMITS, type RateLimits } from './limits.js';
export { HOOK_DEFAULTS, HOOK_EVENT_KEYS, MAX_OBJECT_KEYS, SandboxHooks, type InjectedDeliveryFailure, type PendingHookBatch } from './hooks.js';
export {
  SandboxState,
  SandboxStateError,
  type CredentialKind,
  type EmailField,
  type HookDeliveryBody,
  type HookDeliveryRecord,
  type NewSandboxContact,
  type RecordedRequest,
  type SandboxContact,
  type SandboxChange,
  type SandboxContactChanges,
  type SandboxCustomField,
  type SandboxEmailAddress,
  type SandboxFieldType,
  type SandboxHook,
  type SandboxHookStatus,
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
  /** In-memory data, inspectable and changeable by tests (hook subscriptions: `state.hooks`, `state.hookDeliveries`). */
  state: SandboxState;
  /**
   * REST hook deliveries: `deliverDue()` (what is due by the sandbox clock; the running sandbox also does this every
   * 50 ms), `flush()` (everything pending, now), `failNextDeliveries(url, n, { status? })`, `pending()`.
   */
  hooks: SandboxHooks;
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
  const { app, state, oauth, faults, hooks } = createKeapSandboxApp(options);
  const host = options.host ?? '127.0.0.1';
  const server = createServer(app);
  await listen(server, options.port ?? 0, host);
  const { port } = server.address() as AddressInfo;
  hooks.start();
  const origin = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    url: `${origin}/crm`,
    tokenUrl: `${origin}/token`,
    authorizeUrl: `${origin}/app/oauth/authorize`,
    state,
    hooks,
    issueAuthorizationCode: (redirectUri) => oauth.issueAuthorizationCode(redirectUri),
    failNext: (count, status, failOptions) => faults.failNext(count, status, failOptions),
    troubleNext: (count, fault, troubleOptions) => faults.troubleNext(count, fault, troubleOptions),
    chaos: (chaosOptions) => faults.chaos(chaosOptions),
    expireAccessTokens: () => oauth.expireAccessTokens(),
    close: async () => {
      await hooks.stop();
      await closeServer(server);
    },
  };
}

/** `npm run keap-sandbox`: serve the sandbox on KEAP_SANDBOX_PORT (default 4010) until SIGINT or SIGTERM. */
/**
 * The command that starts memberhook against this sandbox, as the README's trial prints it (a test holds the two
 * to each other): the password field is named, so generated passwords are written back and Alan's is read, and
 * outbound webhooks may reach a receiver on this machine (a trial's is on loopback).
 */
export function trialCommand(url: string): string[] {
  return [
    'ACCESS_KEY=try-it-out-access-key-0123456789abcdef \\',
    `KEAP_API_URL=${url} KEAP_API_KEY=${SANDBOX_DEFAULTS.apiKey} \\`,
    'KEAP_PASSWORD_FIELD=Password API_TOKEN=try-it-out-api-token-0123456789 \\',
    'OUTBOUND_ALLOW_PRIVATE=1 npm start',
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
      `  REST hooks:               ${sandbox.url}/rest/v1/hooks (changes are posted to Verified hooks about 1 s later)`,
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
