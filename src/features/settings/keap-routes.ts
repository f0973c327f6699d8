import { formFields, formText } from '../../core/forms.js';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Router, type Request, type Response } from 'express';
import { formatTime } from '../../web/format.js';
import { describeKeapConnection } from '../keap/connection-state.js';
import { isKeapError, KeapRetryableError } from '../keap/errors.js';
import type { KeapCustomFieldDefinition } from '../keap/types.js';
import { sessionToken } from '../members/sessions.js';
import type { SettingsContext } from './context.js';

export const KEAP_SETTINGS_PATH = '/admin/settings/keap';
export const KEAP_CALLBACK_PATH = `${KEAP_SETTINGS_PATH}/callback`;

/** An OAuth `state` is good for this long after "Connect to Keap", and for one callback only. */
export const OAUTH_STATE_TTL_MS = 10 * 60_000;
/** The settings row holding the one connection attempt under way (hashes only, never the state itself). */
const OAUTH_PENDING_SETTING = 'keap.oauth_pending';
/** How long the page waits for Keap's field list before showing text inputs instead (the fetch goes on and fills the cache). */
const FIELD_LIST_WAIT_MS = 3_000;
const FIELD_MAX = 255;

/** What a redirect back to the page says, by `?done=`: fixed texts, so a link cannot make the page say anything else. */
const NOTICES = {
  key_saved: 'Keap accepted the API key, and it is stored. memberhook uses it from now on.',
  key_saved_untested: 'The API key is stored without a test (Keap could not be reached). Test the connection once Keap answers.',
  key_cleared: 'The stored API key is cleared.',
  connected: 'Keap is connected. memberhook calls Keap through this connection from now on.',
  disconnected: 'Keap is disconnected: the stored OAuth tokens are deleted.',
  fields_saved: 'The custom fields and password choices are saved. The next member sync uses them.',
} as const;
type Notice = keyof typeof NOTICES;

type FieldSetting = 'passwordField' | 'usernameField';
/** Each field's form input, and what memberhook does with the saved choice (the hint under the input says it). */
const FIELD_INPUTS: Record<FieldSetting, { name: string; label: string; none: string; chosen: string }> = {
  passwordField: {
    name: 'password_field',
    label: 'Password field',
    none: 'passwords are not read from or written back to Keap',
    chosen: 'a new member gets the password Keap holds in it; if it is empty, memberhook generates one and writes it back there',
  },
  usernameField: {
    name: 'username_field',
    label: 'Username field',
    none: 'the member’s email is the username',
    chosen: 'a new member’s username is taken from it (the email when it is empty)',
  },
};

/** The two password choices under the password field: their checkboxes, and what each does when on and when off. */
const PASSWORD_SYNC_INPUTS = {
  push: {
    name: 'push_passwords',
    label: 'Write password changes to Keap',
    on: 'a password a member sets (account page, reset link) or an administrator or the JSON API sets is written to the field, so a ~Contact.Password~ email sends the right one. An administrator’s password never is',
    off: 'password changes stay in memberhook and Keap’s field keeps the password it had (a generated password is still written there)',
  },
  take: {
    name: 'take_keap_passwords',
    label: 'Take a new password typed into Keap’s field',
    on: 'when an update post finds a new password in the field, it becomes the member’s password and the member’s sessions end. Never for members with admin rights; a password taken from Keap is not written back',
    off: 'update posts leave members’ passwords alone, whatever the field holds (a new member still gets the password it holds)',
  },
} as const;
type PasswordSyncChoice = keyof typeof PASSWORD_SYNC_INPUTS;
/** The hidden input that says the form carried the checkboxes (an unchecked box sends nothing). */
const PASSWORD_SYNC_MARKER = 'password_choices';

interface PageExtras {
  notice?: string;
  error?: string;
  testResult?: { ok: boolean; message: string };
  /** Keap could not be reached to test a key: the form offers storing it untested. */
  offerUntested?: boolean;
  fieldErrors?: Partial<Record<FieldSetting, string>>;
  /** What the admin sent, shown back in a form that was refused. */
  fieldValues?: Partial<Record<FieldSetting, string>>;
  apiKeyError?: string;
}

interface PendingState {
  stateHash: string;
  sessionHash: string;
  expiresAt: number;
}

/** Admin pages (mounted after requireAdmin): Settings, Keap tab: API key or OAuth connection, test connection, username and password fields. */
export function keapSettingsRoutes(ctx: SettingsContext): Router {
  const router = Router();
  const redirectUri = `${ctx.config.publicUrl}${KEAP_CALLBACK_PATH}`;

  const render = async (res: Response, status: number, extras: PageExtras = {}) => {
    allowFormRedirectToKeap(ctx, res);
    ctx.admin.view(res, status, 'settings/keap', {
      title: 'Keap connection',
      keap: describeKeapConnection(ctx.keap, ctx.config.keap.apiUrl, () => ctx.site.keapApiKeySource()),
      apiKey: apiKeyView(ctx),
      oauth: oauthView(ctx, redirectUri),
      fields: await fieldsView(ctx, extras),
      ...extras,
    });
  };

  router.get('/', async (req, res) => {
    const done = typeof req.query.done === 'string' && Object.hasOwn(NOTICES, req.query.done) ? (req.query.done as Notice) : undefined;
    await render(res, 200, done ? { notice: NOTICES[done] } : {});
  });

  // ------------------------------------------------------------------------------------------------------------
  // API key

  router.post('/api-key', async (req, res) => {
    const fixedBy = ctx.site.fixedByEnvironment('keapApiKey');
    if (fixedBy) return render(res, 400, { apiKeyError: `The API key is set by ${fixedBy} in the environment and cannot be changed here.` });
    const key = formText(formFields(req).api_key).trim();
    const problem = apiKeyProblem(key);
    if (problem) return render(res, 400, { apiKeyError: problem });
    // Tried before it is stored: a key Keap refuses would otherwise fail every job from now on. Only when Keap cannot
    // be reached to ask may the admin store it untested, and only by saying so.
    const untested = formText(formFields(req).store_anyway) === 'yes';
    let tested: { customFields: number } | undefined;
    if (!untested) {
      try {
        tested = await ctx.keap.testApiKey(key);
      } catch (err) {
        const message = keapFailureMessage(ctx, err, 'keap api key refused on the settings page');
        if (err instanceof KeapRetryableError) {
          return render(res, 502, { apiKeyError: `Keap could not be reached to test the key (${message}). Nothing was stored: try again, or tick “Store it untested”.`, offerUntested: true });
        }
        return render(res, 400, { apiKeyError: `Keap refused this key: ${message}. Nothing was stored.` });
      }
    }
    ctx.site.setKeapApiKey(key);
    // Another key may be another Keap account: its custom fields are fetched afresh.
    ctx.keap.invalidateContactModel();
    ctx.logger.info({ adminId: res.locals.admin?.id, tested: !untested }, 'keap api key stored from the settings page');
    res.redirect(303, `${KEAP_SETTINGS_PATH}?done=${tested ? 'key_saved' : 'key_saved_untested'}`);
  });

  router.post('/api-key/clear', async (_req, res) => {
    const fixedBy = ctx.site.fixedByEnvironment('keapApiKey');
    if (fixedBy) return render(res, 400, { apiKeyError: `The API key is set by ${fixedBy} in the environment and cannot be cleared here.` });
    ctx.site.setKeapApiKey('');
    ctx.keap.invalidateContactModel();
    ctx.logger.info({ adminId: res.locals.admin?.id }, 'keap api key cleared from the settings page');
    res.redirect(303, `${KEAP_SETTINGS_PATH}?done=key_cleared`);
  });

  // ------------------------------------------------------------------------------------------------------------
  // Test connection

  router.post('/test', async (_req, res) => {
    let testResult: PageExtras['testResult'];
    if (ctx.keap.authMode === 'none') {
      testResult = { ok: false, message: 'there is nothing to test yet: enter an API key below (or set KEAP_API_KEY), or set up OAuth and connect.' };
      return render(res, 200, { testResult });
    }
    try {
      const result = await ctx.keap.testConnection();
      const how = result.authMode === 'oauth' ? 'the OAuth connection' : 'the API key';
      testResult = { ok: true, message: `Keap answered with ${how}: the account has ${result.customFields} contact custom field${result.customFields === 1 ? '' : 's'}.` };
    } catch (err) {
      testResult = { ok: false, message: keapFailureMessage(ctx, err, 'keap connection test failed') };
    }
    await render(res, 200, { testResult });
  });

  // ------------------------------------------------------------------------------------------------------------
  // OAuth: connect, callback, disconnect

  router.post('/connect', async (req, res) => {
    const oauth = ctx.keap.oauth;
    if (!oauth) return render(res, 400, { error: 'Connecting needs an OAuth app: set KEAP_CLIENT_ID and KEAP_CLIENT_SECRET, then restart memberhook.' });
    const sessionHash = sessionHashOf(ctx, req);
    if (!sessionHash) return render(res, 400, { error: 'Your session cookie is missing: log in again, then connect.' });
    const state = randomBytes(32).toString('base64url');
    const pending: PendingState = { stateHash: sha256(state), sessionHash, expiresAt: ctx.clock.now() + OAUTH_STATE_TTL_MS };
    // One attempt at a time: starting again replaces an unfinished one (its state stops working).
    ctx.settings.set(OAUTH_PENDING_SETTING, JSON.stringify(pending));
    ctx.logger.info({ adminId: res.locals.admin?.id }, 'keap oauth connection started');
    res.redirect(303, oauth.authorizeUrl(ctx.config.keap.authorizeUrl, redirectUri, state));
  });

  router.get('/callback', async (req, res) => {
    const oauth = ctx.keap.oauth;
    if (!oauth) return render(res, 400, { error: 'Keap OAuth is not configured (KEAP_CLIENT_ID and KEAP_CLIENT_SECRET), so there is no connection to finish.' });
    const state = queryText(req, 'state');
    const code = queryText(req, 'code');
    const keapError = queryText(req, 'error');

    const verdict = state ? consumePendingState(ctx, state, sessionHashOf(ctx, req)) : 'missing';
    if (keapError) {
      // Only Keap's error code is shown, from a fixed set of words: anyone can put text in this link.
      const message =
        keapError === 'access_denied'
          ? 'Keap did not connect: access was denied on Keap’s page (the request was declined). Nothing changed; you can connect again.'
          : `Keap did not connect: it answered with the error “${/^[a-z_]{1,40}$/.test(keapError) ? keapError : 'unknown'}”. Nothing changed; you can connect again.`;
      ctx.logger.info({ adminId: res.locals.admin?.id, keapError: /^[a-z_]{1,40}$/.test(keapError) ? keapError : 'unknown' }, 'keap oauth connection not approved');
      return render(res, 400, { error: message });
    }
    if (verdict !== 'ok') {
      ctx.logger.warn({ adminId: res.locals.admin?.id, reason: verdict }, 'keap oauth callback refused');
      return render(res, 400, { error: STATE_REFUSALS[verdict] });
    }
    if (!code) return render(res, 400, { error: 'Keap’s answer has no authorization code. Connect again.' });
    try {
      await oauth.exchangeAuthorizationCode(code, redirectUri);
    } catch (err) {
      const message = keapFailureMessage(ctx, err, 'keap oauth code exchange failed');
      return render(res, err instanceof KeapRetryableError ? 502 : 400, { error: `Keap did not connect: ${message}` });
    }
    ctx.keap.invalidateContactModel();
    ctx.logger.info({ adminId: res.locals.admin?.id }, 'keap oauth connected from the settings page');
    res.redirect(303, `${KEAP_SETTINGS_PATH}?done=connected`);
  });

  router.post('/disconnect', async (req, res) => {
    const oauth = ctx.keap.oauth;
    if (!oauth) return render(res, 400, { error: 'Keap OAuth is not configured, so there is no connection to remove.' });
    if (formText(formFields(req).confirm) !== 'yes') {
      return render(res, 400, { error: 'To disconnect, tick “Yes, delete the stored tokens” and press Disconnect again.' });
    }
    oauth.disconnect();
    ctx.keap.invalidateContactModel();
    ctx.logger.info({ adminId: res.locals.admin?.id }, 'keap oauth disconnected from the settings page');
    res.redirect(303, `${KEAP_SETTINGS_PATH}?done=disconnected`);
  });

  // ------------------------------------------------------------------------------------------------------------
  // Custom fields

  router.post('/fields', async (req, res) => {
    const fieldErrors: Partial<Record<FieldSetting, string>> = {};
    const fieldValues: Partial<Record<FieldSetting, string>> = {};
    const body = formFields(req);
    for (const setting of ['passwordField', 'usernameField'] as const) {
      const { name, label } = FIELD_INPUTS[setting];
      const sent = body[name];
      const fixedBy = ctx.site.fixedByEnvironment(setting);
      if (fixedBy) {
        if (sent !== undefined) fieldErrors[setting] = `${label} is set by ${fixedBy} in the environment and cannot be changed here.`;
        continue;
      }
      if (sent === undefined) continue;
      const value = typeof sent === 'string' ? sent.trim() : '';
      fieldValues[setting] = value;
      if (typeof sent !== 'string') fieldErrors[setting] = `${label}: expected one field.`;
      else if (value.length > FIELD_MAX) fieldErrors[setting] = `${label}: expected at most ${FIELD_MAX} characters.`;
      else if (/[\x00-\x1f\x7f]/.test(value)) fieldErrors[setting] = `${label}: expected a field’s label or id, without control characters.`;
    }
    // A choice from the selects is checked against Keap; a field typed because Keap could not list them is taken as given.
    if (Object.keys(fieldErrors).length === 0 && body?.fields_from === 'keap') {
      const listed = await listCustomFields(ctx);
      if (listed.fields) {
        for (const setting of ['passwordField', 'usernameField'] as const) {
          const value = fieldValues[setting];
          if (value && !matchField(listed.fields, value)) fieldErrors[setting] = `Keap has no contact custom field “${value}”.`;
        }
      }
    }
    const passwordChoices = body[PASSWORD_SYNC_MARKER] === undefined ? undefined : readPasswordChoices(body);
    if (typeof passwordChoices === 'string') return render(res, 400, { error: passwordChoices });
    if (Object.keys(fieldErrors).length > 0) return render(res, 400, { fieldErrors, fieldValues });
    ctx.site.setKeapFields(fieldValues);
    if (passwordChoices) ctx.site.setPasswordSync(passwordChoices);
    const saved = ctx.site.passwordSyncChoices();
    ctx.logger.info(
      { adminId: res.locals.admin?.id, passwordField: ctx.site.passwordField() ?? null, usernameField: ctx.site.usernameField() ?? null, pushPasswords: saved.push, takeKeapPasswords: saved.take },
      'keap custom fields saved',
    );
    res.redirect(303, `${KEAP_SETTINGS_PATH}?done=fields_saved`);
  });

  return router;
}

// ----------------------------------------------------------------------------------------------------------------
// OAuth state

const STATE_REFUSALS = {
  missing: 'This link from Keap has no state, so it cannot be matched to a “Connect to Keap” you started. Nothing was stored; connect again.',
  none: 'No connection to Keap is waiting to finish (this link was used already, or Connect was never pressed). Nothing was stored; connect again.',
  mismatch: 'This link from Keap does not belong to the connection you started (its state does not match). Nothing was stored; connect again.',
  session: 'This connection was started in another session. Nothing was stored; connect again from this browser.',
  expired: 'This connection attempt is more than 10 minutes old and has expired. Nothing was stored; connect again.',
} as const;

/**
 * Checks `state` against the attempt under way and, when it is the one, uses it up (in one write transaction, so
 * two callbacks racing with the same link cannot both pass). A wrong state leaves the attempt alone: a stray or
 * forged link must not cancel the admin's real one.
 */
function consumePendingState(ctx: SettingsContext, state: string, sessionHash: string | undefined): 'ok' | Exclude<keyof typeof STATE_REFUSALS, 'missing'> {
  const consume = ctx.db.transaction(() => {
    const pending = parsePending(ctx.settings.get(OAUTH_PENDING_SETTING));
    if (!pending) return 'none' as const;
    if (!sameHash(sha256(state), pending.stateHash)) return 'mismatch' as const;
    if (!sessionHash || !sameHash(sessionHash, pending.sessionHash)) return 'session' as const;
    ctx.settings.set(OAUTH_PENDING_SETTING, '');
    return pending.expiresAt <= ctx.clock.now() ? ('expired' as const) : ('ok' as const);
  });
  return consume.immediate();
}

function parsePending(raw: string | undefined): PendingState | undefined {
  if (!raw) return undefined;
  try {
    const value = JSON.parse(raw) as Partial<PendingState>;
    if (typeof value.stateHash === 'string' && typeof value.sessionHash === 'string' && typeof value.expiresAt === 'number') {
      return { stateHash: value.stateHash, sessionHash: value.sessionHash, expiresAt: value.expiresAt };
    }
  } catch {
    // An unreadable row is no attempt.
  }
  return undefined;
}

function sessionHashOf(ctx: SettingsContext, req: Request): string | undefined {
  const token = sessionToken(ctx, req);
  return token ? sha256(token) : undefined;
}

function sha256(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * "Connect to Keap" posts a form here and is answered with a redirect to Keap's authorize page, which may send the
 * browser on to Keap's sign-in pages. Chrome and Safari hold every hop of a form's redirects to `form-action`, so the
 * site-wide `form-action 'self'` would stop the connection at the first hop. On this page only, Keap's authorize
 * origin and https destinations are allowed too (every form here still posts to this site).
 */
function allowFormRedirectToKeap(ctx: SettingsContext, res: Response): void {
  if (!ctx.keap.oauth) return;
  const policy = res.getHeader('Content-Security-Policy');
  if (typeof policy !== 'string') return;
  const origin = new URL(ctx.config.keap.authorizeUrl).origin;
  res.setHeader('Content-Security-Policy', policy.replace(/form-action [^;]*/, `form-action 'self' ${origin} https:`));
}

// ----------------------------------------------------------------------------------------------------------------
// What the page shows

function apiKeyView(ctx: SettingsContext) {
  const key = ctx.site.keapApiKey();
  const fixedBy = ctx.site.fixedByEnvironment('keapApiKey');
  return {
    fixedBy: fixedBy && key ? fixedBy : undefined,
    source: ctx.site.keapApiKeySource() ?? null,
    // Enough to tell two keys apart, never enough to use one.
    ending: key && key.length >= 12 ? key.slice(-4) : null,
    set: key !== undefined,
  };
}

function oauthView(ctx: SettingsContext, redirectUri: string) {
  const oauth = ctx.keap.oauth;
  const connection = oauth?.connection ?? null;
  return {
    configured: oauth !== undefined,
    connected: connection !== null,
    expiresAt: connection ? formatTime(new Date(connection.expiresAt).toISOString()) : null,
    keyWins: oauth !== undefined && ctx.site.keapApiKey() !== undefined,
    redirectUri,
  };
}

interface FieldSelect {
  setting: FieldSetting;
  name: string;
  label: string;
  /** What the saved choice does (not the one in a refused form being shown back). */
  hint: string;
  fixedBy: string | undefined;
  value: string;
  error: string | undefined;
  options: Array<{ value: string; label: string; selected: boolean }>;
}

/** The checkboxes' values, or what is wrong with them: a checked box sends `yes`, an unchecked one nothing. */
function readPasswordChoices(body: Record<string, unknown>): { push: boolean; take: boolean } | string {
  const choices = { push: false, take: false };
  for (const choice of ['push', 'take'] as const) {
    const { name, label } = PASSWORD_SYNC_INPUTS[choice];
    const sent = body[name];
    if (sent !== undefined && sent !== 'yes') return `${label}: expected the checkbox’s value “yes”, or nothing when it is not ticked.`;
    choices[choice] = sent === 'yes';
  }
  return choices;
}

/** The two checkboxes with their saved state, and hints saying what the saved choice does (nothing without a field). */
function passwordSyncView(ctx: SettingsContext) {
  const saved = ctx.site.passwordSyncChoices();
  const fieldSet = ctx.site.passwordField() !== undefined;
  const boxes = (['push', 'take'] as const).map((choice: PasswordSyncChoice) => {
    const input = PASSWORD_SYNC_INPUTS[choice];
    const on = saved[choice];
    const hint = fieldSet
      ? `${on ? 'On' : 'Off'}: ${on ? input.on : input.off}.`
      : `${on ? 'On' : 'Off'}, but no password field is saved, so nothing is written to Keap or taken from it.`;
    return { name: input.name, label: input.label, checked: on, hint };
  });
  return { marker: PASSWORD_SYNC_MARKER, boxes };
}

async function fieldsView(ctx: SettingsContext, extras: PageExtras) {
  const listed = await listCustomFields(ctx);
  const selects: FieldSelect[] = (['passwordField', 'usernameField'] as const).map((setting) => {
    const current = setting === 'passwordField' ? ctx.site.passwordField() : ctx.site.usernameField();
    const value = extras.fieldValues?.[setting] ?? current ?? '';
    const input = FIELD_INPUTS[setting];
    const options = [{ value: '', label: '— none —', selected: value === '' }];
    if (listed.fields) {
      const match = value ? matchField(listed.fields, value) : undefined;
      for (const f of listed.fields) options.push({ value: f.id, label: `${f.label} (id ${f.id})`, selected: f === match });
      // A stored name Keap does not know (renamed or deleted field) stays selectable, so saving the form keeps it.
      if (value && !match) options.push({ value, label: `${value} (not found in Keap)`, selected: true });
    }
    const savedLabel = current ? (listed.fields && matchField(listed.fields, current)?.label) ?? current : undefined;
    const hint = savedLabel ? `Saved: “${savedLabel}”: ${input.chosen}.` : `Saved: none: ${input.none}.`;
    return { setting, name: input.name, label: input.label, hint, fixedBy: ctx.site.fixedByEnvironment(setting), value, error: extras.fieldErrors?.[setting], options };
  });
  return {
    selects,
    passwordSync: passwordSyncView(ctx),
    listed: listed.fields !== undefined,
    loadError: listed.error ?? null,
    // Not set up yet is a hint; Keap failing to answer is an alert.
    loadFailed: listed.failed === true,
  };
}

/** Keap's contact custom fields, or why they cannot be listed (not set up, unreachable, or slow). */
async function listCustomFields(ctx: SettingsContext): Promise<{ fields?: KeapCustomFieldDefinition[]; error?: string; failed?: boolean }> {
  const mode = ctx.keap.authMode;
  if (mode === 'none') return { error: 'Keap is not set up yet, so its fields cannot be listed: type a field’s label or id.' };
  if (mode === 'oauth' && !ctx.keap.oauth?.connected) return { error: 'Keap is not connected yet, so its fields cannot be listed: type a field’s label or id.' };
  let timer: NodeJS.Timeout | undefined;
  const slow = new Promise<'slow'>((resolve) => {
    timer = setTimeout(() => resolve('slow'), FIELD_LIST_WAIT_MS);
  });
  try {
    const result = await Promise.race([ctx.keap.getCustomFields(), slow]);
    if (result === 'slow') return { failed: true, error: `Keap did not answer within ${FIELD_LIST_WAIT_MS / 1000} s, so its fields cannot be listed: type a field’s label or id.` };
    return { fields: result };
  } catch (err) {
    return { failed: true, error: `Keap’s fields cannot be listed (${keapFailureMessage(ctx, err, 'keap custom fields could not be listed')}): type a field’s label or id.` };
  } finally {
    clearTimeout(timer);
  }
}

/** As the member sync resolves a setting: by id, else by label in any case. */
function matchField(fields: readonly KeapCustomFieldDefinition[], labelOrId: string): KeapCustomFieldDefinition | undefined {
  const wanted = labelOrId.trim().toLowerCase();
  return fields.find((f) => String(f.id) === wanted) ?? fields.find((f) => f.label.toLowerCase() === wanted);
}

/** Keap errors carry no secrets (the client strips them); anything else is logged and summed up. */
function keapFailureMessage(ctx: SettingsContext, err: unknown, logMessage: string): string {
  if (isKeapError(err)) {
    ctx.logger.warn({ status: err.status, path: err.path, error: err.message }, logMessage);
    return err.message;
  }
  ctx.logger.error({ err }, logMessage);
  return 'an unexpected error (see the log)';
}

function apiKeyProblem(key: string): string | undefined {
  if (!key) return 'Enter the API key (a Personal Access Token or Service Account Key from Keap).';
  if (key.length < 8) return 'That is too short for a Keap API key: expected at least 8 characters.';
  if (key.length > 512) return 'That is too long for a Keap API key: expected at most 512 characters.';
  if (!/^[\x21-\x7e]+$/.test(key)) return 'A Keap API key has printable characters only, without spaces.';
  return undefined;
}


function queryText(req: Request, name: string): string {
  const value = req.query[name];
  return typeof value === 'string' ? value : '';
}
