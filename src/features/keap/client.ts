import { systemClock, type Clock } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import { KeapError, KeapPermanentError, KeapRetryableError, keapFetchFailure, keapMessageOf } from './errors.js';
import { KeapOAuth } from './oauth.js';
import { KeapRateLimiter } from './rate-limiter.js';
import type {
  KeapContact,
  KeapContactModel,
  KeapContactPage,
  KeapContactSummary,
  KeapContactTag,
  KeapCustomFieldDefinition,
  KeapCustomFieldValue,
  KeapEmailAddress,
  KeapOrderSummary,
  KeapTaggedContact,
  KeapV2Page,
  KeapRateReport,
  KeapRestHook,
  KeapTokenStore,
  StoredTokens,
} from './types.js';

/**
 * The app's Keap client: authentication (API key, or OAuth2 with refresh and rotation), Keap's rate limits,
 * timeouts, short retries, and the handful of v1/v2 calls memberhook makes, each checked against Keap's spec files.
 *
 * Errors are typed for the caller (the job queue): KeapRetryableError for 429, 5xx, network failures and timeouts,
 * with a hint how long to wait; KeapPermanentError for 400/401/403/404 with Keap's message.
 */

export interface KeapClientOptions {
  /** Everything up to /crm, e.g. https://api.infusionsoft.com/crm */
  apiUrl: string;
  /**
   * A Personal Access Token or Service Account Key; used instead of OAuth when set. A function is asked on every
   * request, so a key an admin stores or clears in the settings applies at once, without a restart.
   */
  apiKey?: string | (() => string | undefined) | undefined;
  oauth?: { clientId: string; clientSecret: string; tokenUrl: string } | undefined;
  /** Where OAuth tokens live (unused with an API key). */
  tokenStore: KeapTokenStore;
  rateLimit: { perSecond: number; perMinute: number };
  /** Per HTTP request, including reading the body; default 10 s. */
  timeoutMs?: number;
  clock?: Clock;
  logger: Logger;
  /**
   * Retries inside one call: after a 429 (once the limiter's pause has passed, when that is at most 5 s) and after a 5xx or network failure
   * (with back-off). Timeouts are not retried here: they already cost `timeoutMs`. Default 2. The calls the client
   * repeats are idempotent (reads, and a PATCH that sets fixed values); creating a contact is repeated only after a 429.
   */
  maxRetries?: number;
  /** How long the contact model (custom field definitions) is cached; default 10 minutes. */
  modelCacheTtlMs?: number;
  /** Refresh OAuth tokens this long before they expire; default 5 minutes. */
  refreshBeforeMs?: number;
  /** A shared limiter (several clients on one key); one is made from `rateLimit` otherwise. */
  limiter?: KeapRateLimiter;
  /** For tests that record what is sent; the global fetch otherwise. */
  fetch?: typeof fetch;
}

type Query = Record<string, string | number | undefined>;

interface RequestSpec {
  method: 'GET' | 'PATCH' | 'POST' | 'PUT' | 'DELETE';
  /** From /rest on, e.g. /rest/v2/contacts/101 */
  path: string;
  query?: Query;
  body?: unknown;
  /** A key to try instead of the configured credential (the settings page tests a key before storing it). */
  apiKey?: string;
  /** Extra request headers (delayedVerify's X-Hook-Secret). */
  headers?: Record<string, string>;
  /**
   * The call changes something each time it is made (a POST that creates): after a 5xx or a broken connection Keap
   * may have done it already, so only a 429 (refused before any work) is tried again.
   */
  notIdempotent?: boolean;
}

const CONTACT_FIELDS = ['email_addresses', 'given_name', 'family_name', 'custom_fields', 'tag_ids'];
/** Keap's largest page for v2 lists (`page_size` maximum 1000). */
const V2_MAX_PAGE_SIZE = 1000;
/** Keap's largest page for v1 lists. */
const V1_MAX_LIMIT = 1000;
/** A contact with more tags than this many pages hold is not something to page through forever. */
const MAX_TAG_PAGES = 50;
/** Longest 429 pause a call waits out itself before retrying; longer ones go back to the caller. */
const MAX_INLINE_THROTTLE_WAIT_MS = 5_000;
/** A label not in a cached model triggers a fresh fetch (a field created since), at most this often. */
const MODEL_MISS_REFETCH_MS = 60_000;

export class KeapClient {
  readonly limiter: KeapRateLimiter;
  /** Present when OAuth is configured (the connect flow uses it); an API key, while one is set, still wins. */
  readonly oauth: KeapOAuth | undefined;
  private readonly apiUrl: string;
  private readonly apiKeySource: () => string | undefined;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly modelTtlMs: number;
  private readonly fetchImpl: typeof fetch;
  private readonly secrets: string[];
  private model: { value: KeapContactModel; fetchedAt: number } | null = null;
  private modelRequest: Promise<KeapContactModel> | null = null;

  constructor(options: KeapClientOptions) {
    this.apiUrl = options.apiUrl.replace(/\/+$/, '');
    const apiKey = options.apiKey;
    this.apiKeySource = typeof apiKey === 'function' ? () => apiKey() || undefined : () => apiKey || undefined;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxRetries = Math.max(0, options.maxRetries ?? 2);
    this.modelTtlMs = options.modelCacheTtlMs ?? 10 * 60_000;
    this.fetchImpl = options.fetch ?? globalThis.fetch;
    this.limiter = options.limiter ?? new KeapRateLimiter({ ...options.rateLimit, clock: this.clock, logger: this.logger });
    // Built whenever OAuth is configured: the key may be cleared later, and the connection must then be there.
    this.oauth =
      options.oauth
        ? new KeapOAuth({
            ...options.oauth,
            tokenStore: options.tokenStore,
            logger: this.logger,
            clock: this.clock,
            timeoutMs: this.timeoutMs,
            fetch: this.fetchImpl,
            ...(options.refreshBeforeMs !== undefined ? { refreshBeforeMs: options.refreshBeforeMs } : {}),
          })
        : undefined;
    this.secrets = [options.oauth?.clientSecret].filter((s): s is string => typeof s === 'string' && s.length > 0);
  }

  /** How the client authenticates right now: 'key', 'oauth', or 'none' (every call fails until one is configured). */
  get authMode(): 'key' | 'oauth' | 'none' {
    return this.apiKeySource() ? 'key' : this.oauth ? 'oauth' : 'none';
  }

  /** The latest throttle and quota figures from Keap's headers. */
  get lastReported(): KeapRateReport | null {
    return this.limiter.lastReported;
  }

  /** OAuth: trades the code from Keap's redirect for tokens and stores them. */
  exchangeAuthorizationCode(code: string, redirectUri: string): Promise<StoredTokens> {
    if (!this.oauth) throw new Error('Keap OAuth is not configured (KEAP_CLIENT_ID and KEAP_CLIENT_SECRET)');
    return this.oauth.exchangeAuthorizationCode(code, redirectUri);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Calls

  /** A contact with its emails, names, custom field values and tag ids (v2). */
  async getContact(id: number): Promise<KeapContact> {
    const path = `/rest/v2/contacts/${contactIdSegment(id, 'GET', '/rest/v2/contacts/{contact_id}')}`;
    const raw = await this.request<Record<string, unknown>>({ method: 'GET', path, query: { fields: CONTACT_FIELDS.join(',') } });
    return normalizeContact(raw, id);
  }

  /**
   * The tags applied to a contact, with names and category names. This is v1's listAppliedTags: v2 gives a tag's
   * category only as an id (CategoryReference), while v1's SimpleTag carries the category's name.
   */
  async getContactTags(id: number): Promise<KeapContactTag[]> {
    const path = `/rest/v1/contacts/${contactIdSegment(id, 'GET', '/rest/v1/contacts/{contactId}/tags')}/tags`;
    const tags: KeapContactTag[] = [];
    for (let page = 0, offset = 0; page < MAX_TAG_PAGES; page++) {
      const body = await this.request<Record<string, unknown>>({ method: 'GET', path, query: { limit: V1_MAX_LIMIT, offset } });
      const items = Array.isArray(body.tags) ? (body.tags as unknown[]) : [];
      for (const item of items) {
        const tag = (item as { tag?: Record<string, unknown> } | null)?.tag;
        const tagId = Number(tag?.id);
        if (!tag || !Number.isSafeInteger(tagId)) continue;
        tags.push({ id: tagId, name: typeof tag.name === 'string' ? tag.name : '', category: typeof tag.category === 'string' ? tag.category : '' });
      }
      offset += items.length;
      const count = typeof body.count === 'number' ? body.count : offset;
      if (items.length === 0 || offset >= count) break;
    }
    return tags;
  }

  /** Contact custom field definitions and optional properties (v2 model), cached for `modelCacheTtlMs`. */
  async getContactModel(options: { fresh?: boolean } = {}): Promise<KeapContactModel> {
    const cached = this.model;
    if (!options.fresh && cached && this.clock.now() - cached.fetchedAt < this.modelTtlMs) return cached.value;
    // Parallel jobs at start-up share one request.
    this.modelRequest ??= this.fetchContactModel().finally(() => {
      this.modelRequest = null;
    });
    return this.modelRequest;
  }

  /** The contact custom field definitions (cached; see getContactModel). */
  async getCustomFields(): Promise<KeapCustomFieldDefinition[]> {
    return (await this.getContactModel()).customFields;
  }

  /**
   * A custom field's id from its label (case-insensitive, as people type it) or its id; undefined when the
   * account has no such field. A miss refetches the model (at most once a minute) in case the field is new.
   */
  async getCustomFieldIdByLabel(labelOrId: string | number): Promise<string | undefined> {
    const find = (model: KeapContactModel) => findCustomField(model.customFields, labelOrId)?.id;
    const found = find(await this.getContactModel());
    if (found !== undefined) return found;
    if (this.model && this.clock.now() - this.model.fetchedAt < MODEL_MISS_REFETCH_MS) return undefined;
    return find(await this.getContactModel({ fresh: true }));
  }

  /** Forgets the cached contact model (after custom fields change in Keap). */
  invalidateContactModel(): void {
    this.model = null;
  }

  /**
   * Sets the given custom field values on a contact and leaves its other fields as they are: v1's PATCH, which Keap
   * documents as updating "a contact with only the values provided", with update_mask=custom_fields so no other
   * property changes. Not v2's: its spec says of `custom_fields` "Any item not listed here will be removed if it
   * already exists", so writing one field there may clear every other. v1 types field ids as integers.
   */
  async updateContactCustomFields(id: number, fields: ReadonlyArray<{ id: number | string; content: unknown }>): Promise<void> {
    const specPath = '/rest/v1/contacts/{contactId}';
    const path = `/rest/v1/contacts/${contactIdSegment(id, 'PATCH', specPath)}`;
    const customFields = fields.map((f) => ({ id: customFieldIdNumber(f.id, path), content: f.content }));
    await this.request({ method: 'PATCH', path, query: { update_mask: 'custom_fields' }, body: { custom_fields: customFields } });
  }

  /**
   * Contacts whose last update is at or after `since` (and at or before `until`, when given), oldest change first
   * (v1 list, for polling). Page with `offset`; `nextOffset` is null on the last page.
   */
  async listContactsChangedSince(since: Date, page: { limit?: number; offset?: number; until?: Date } = {}): Promise<KeapContactPage> {
    if (Number.isNaN(since.getTime())) throw new RangeError('since must be a valid date');
    const limit = Math.min(Math.max(1, Math.trunc(page.limit ?? V1_MAX_LIMIT)), V1_MAX_LIMIT);
    const offset = Math.max(0, Math.trunc(page.offset ?? 0));
    const body = await this.request<Record<string, unknown>>({
      method: 'GET',
      path: '/rest/v1/contacts',
      query: { since: since.toISOString(), until: page.until && isoTime(page.until), order: 'last_updated', order_direction: 'ASCENDING', limit, offset },
    });
    const contacts = (Array.isArray(body.contacts) ? (body.contacts as unknown[]) : []).flatMap((c) => {
      const summary = normalizeSummary(c);
      return summary ? [summary] : [];
    });
    const count = typeof body.count === 'number' ? body.count : offset + contacts.length;
    const nextOffset = contacts.length > 0 && offset + contacts.length < count ? offset + contacts.length : null;
    return { contacts, count, nextOffset };
  }

  /**
   * The contacts a tag was applied to within [since, until], oldest application first (v2 List Tagged Contacts with
   * `since_applied_time` / `until_applied_time`, full ISO with milliseconds). Page with the token it answers.
   * Removals do not show here (KEAP.md): only the `contactGroup.removed` hook reports them.
   */
  async listContactsTaggedBetween(tagId: number, since: Date, until: Date, pageToken?: string): Promise<KeapV2Page<KeapTaggedContact>> {
    const filter = `since_applied_time==${isoTime(since)};until_applied_time==${isoTime(until)}`;
    return this.taggedContactsPage(tagId, { filter, pageToken });
  }

  /**
   * Orders modified within [since, until], oldest change first (v2 List orders with `modified_since_time` /
   * `modified_until_time`: v1's `since`/`until` do not say which date they compare, v2's filter names it).
   */
  async listOrdersModifiedBetween(since: Date, until: Date, pageToken?: string): Promise<KeapV2Page<KeapOrderSummary>> {
    const body = await this.request<Record<string, unknown>>({
      method: 'GET',
      path: '/rest/v2/orders',
      query: { filter: `modified_since_time==${isoTime(since)};modified_until_time==${isoTime(until)}`, order_by: 'modification_time asc', page_size: V2_MAX_PAGE_SIZE, page_token: pageToken },
    });
    const items = (Array.isArray(body.orders) ? (body.orders as unknown[]) : []).flatMap((o): KeapOrderSummary[] => {
      const raw = (typeof o === 'object' && o !== null ? o : {}) as Record<string, unknown>;
      const id = Number(raw.id);
      if (!Number.isSafeInteger(id) || id <= 0) return [];
      const contactId = Number((raw.contact as { id?: unknown } | undefined)?.id);
      return [{
        id,
        contactId: Number.isSafeInteger(contactId) && contactId > 0 ? contactId : null,
        status: typeof raw.status === 'string' ? raw.status : '',
        modificationTime: typeof raw.modification_time === 'string' ? raw.modification_time : null,
        raw,
      }];
    });
    return { items, nextPageToken: nextPageToken(body, items.length) };
  }

  /**
   * The contacts that have `email` as one of their addresses (v1 list with its `email` filter), at most `limit`
   * of them: to show an admin who an address belongs to in Keap before linking a member to it.
   */
  async findContactsByEmail(email: string, limit = 10): Promise<KeapContactSummary[]> {
    const body = await this.request<Record<string, unknown>>({ method: 'GET', path: '/rest/v1/contacts', query: { email, limit: Math.min(Math.max(1, limit), V1_MAX_LIMIT) } });
    return (Array.isArray(body.contacts) ? (body.contacts as unknown[]) : []).flatMap((c) => {
      const summary = normalizeSummary(c);
      return summary ? [summary] : [];
    });
  }

  /**
   * Creates a contact with one email address (EMAIL1) and names: v1's "Create a Contact" (POST /v1/contacts).
   * No `opt_in_reason`: a member added by hand has not said yes to marketing. Not repeated after a 5xx or a broken
   * connection (Keap may have created it already: the caller looks it up by email before trying again).
   */
  async createContact(contact: { email: string; givenName?: string; familyName?: string }): Promise<KeapContact> {
    const body: Record<string, unknown> = { email_addresses: [{ email: contact.email, field: 'EMAIL1' }] };
    if (contact.givenName) body.given_name = contact.givenName;
    if (contact.familyName) body.family_name = contact.familyName;
    const raw = await this.request<Record<string, unknown>>({ method: 'POST', path: '/rest/v1/contacts', body, notIdempotent: true });
    const created = normalizeContact(raw, 0);
    if (created.id <= 0) {
      throw new KeapPermanentError('Keap POST /rest/v1/contacts answered without the new contact\'s id', { status: 201, method: 'POST', path: '/rest/v1/contacts' });
    }
    return created;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Bulk reads (the import): the fewest calls for what a member needs

  /** How many contacts the account has: v1's list with `limit=1` answers the total as `count` (v2's lists carry none). */
  async countContacts(): Promise<number> {
    const body = await this.request<Record<string, unknown>>({ method: 'GET', path: '/rest/v1/contacts', query: { limit: 1 } });
    return countOf(body, 'GET', '/rest/v1/contacts');
  }

  /** How many contacts carry the tag: v1's tagged-contact list with `limit=1` answers the total as `count`. */
  async countContactsWithTag(tagId: number): Promise<number> {
    const path = `/rest/v1/tags/${positiveId(tagId, 'tag', 'GET', '/rest/v1/tags/{tagId}/contacts')}/contacts`;
    const body = await this.request<Record<string, unknown>>({ method: 'GET', path, query: { limit: 1 } });
    return countOf(body, 'GET', path);
  }

  /**
   * Every tag of the account with its category's name (v1 listTags, 1,000 a call: v1's TagCategory carries the name,
   * v2's CategoryReference only the id), in Keap's order. For an import: tag names for all its contacts in one read.
   */
  async listTags(): Promise<KeapContactTag[]> {
    const tags: KeapContactTag[] = [];
    for (let offset = 0; ; ) {
      const body = await this.request<Record<string, unknown>>({ method: 'GET', path: '/rest/v1/tags', query: { limit: V1_MAX_LIMIT, offset } });
      const items = Array.isArray(body.tags) ? (body.tags as unknown[]) : [];
      for (const item of items) {
        const tag = (typeof item === 'object' && item !== null ? item : {}) as Record<string, unknown>;
        const id = Number(tag.id);
        if (!Number.isSafeInteger(id) || id <= 0) continue;
        const category = (typeof tag.category === 'object' && tag.category !== null ? tag.category : {}) as Record<string, unknown>;
        tags.push({ id, name: text(tag.name), category: text(category.name) });
      }
      offset += items.length;
      const count = typeof body.count === 'number' ? body.count : offset;
      if (items.length === 0 || offset >= count) return tags;
    }
  }

  /**
   * One page of the account's contacts, complete as a member needs them (emails, names, custom fields, tag ids):
   * v2's listContacts with `fields`, by id, up to 1,000 a call. `pageToken` is the previous page's `nextPageToken`,
   * which is null after the last page.
   */
  async listContacts(page: { pageSize?: number; pageToken?: string | null } = {}): Promise<{ contacts: KeapContact[]; nextPageToken: string | null }> {
    const body = await this.request<Record<string, unknown>>({
      method: 'GET',
      path: '/rest/v2/contacts',
      query: { fields: CONTACT_FIELDS.join(','), order_by: 'id asc', page_size: pageSizeOf(page.pageSize), page_token: page.pageToken ?? undefined },
    });
    const contacts = contactsOf(body);
    return { contacts, nextPageToken: nextPageToken(body, contacts.length) };
  }

  /**
   * One page of the contacts carrying a tag, ids only as far as a member goes (v2's listContactsWithTagId gives id,
   * email and names, no custom fields or other tags): read the rest with getContactsByIds. Oldest application first,
   * so contacts tagged during an import land on a later page instead of shifting the ones before.
   */
  async listContactIdsWithTag(tagId: number, page: { pageSize?: number; pageToken?: string | null } = {}): Promise<{ contactIds: number[]; nextPageToken: string | null }> {
    const { items, nextPageToken } = await this.taggedContactsPage(tagId, { pageSize: page.pageSize, pageToken: page.pageToken ?? undefined });
    return { contactIds: items.map((c) => c.id), nextPageToken };
  }

  /** One page of v2 List Tagged Contacts (oldest application first), read as ids and applied times. */
  private async taggedContactsPage(tagId: number, query: { filter?: string; pageSize?: number; pageToken?: string }): Promise<KeapV2Page<KeapTaggedContact>> {
    const path = `/rest/v2/tags/${positiveId(tagId, 'tag', 'GET', '/rest/v2/tags/{tag_id}/contacts')}/contacts`;
    const body = await this.request<Record<string, unknown>>({
      method: 'GET',
      path,
      query: { filter: query.filter, order_by: 'applied_time asc', page_size: pageSizeOf(query.pageSize), page_token: query.pageToken },
    });
    const items = (Array.isArray(body.contacts) ? (body.contacts as unknown[]) : []).flatMap((c): KeapTaggedContact[] => {
      const item = (typeof c === 'object' && c !== null ? c : {}) as Record<string, unknown>;
      const id = Number(item.id);
      if (!Number.isSafeInteger(id) || id <= 0) return [];
      return [{ id, appliedTime: typeof item.applied_time === 'string' ? item.applied_time : null }];
    });
    return { items, nextPageToken: nextPageToken(body, items.length) };
  }

  /**
   * The given contacts, complete as a member needs them: v2's listContacts with the `ids` filter, as many ids a call
   * as keep its URL short (see MAX_ID_FILTER_CHARS). A contact deleted meanwhile is simply not in the answer.
   */
  async getContactsByIds(ids: readonly number[]): Promise<KeapContact[]> {
    // Asked for together: the limiter still spaces them, and none waits for the answer to the one before.
    const pages = await Promise.all(
      idFilterChunks(ids).map((chunk) =>
        this.request<Record<string, unknown>>({
          method: 'GET',
          path: '/rest/v2/contacts',
          query: { filter: `ids==${chunk.join(',')}`, fields: CONTACT_FIELDS.join(','), page_size: chunk.length },
        }),
      ),
    );
    return pages.flatMap(contactsOf);
  }

  /** Checks the credentials and the connection with one cheap call (the contact model, fetched fresh). */
  async testConnection(): Promise<{ ok: true; customFields: number; authMode: 'key' | 'oauth' }> {
    const model = await this.getContactModel({ fresh: true });
    return { ok: true, customFields: model.customFields.length, authMode: this.authMode === 'oauth' ? 'oauth' : 'key' };
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Plumbing

  // ---------------------------------------------------------------------------------------------------------------
  // REST hooks (v1 only: there is no v2 hooks API)

  /** The event keys the account can subscribe to (`contact.add`, `contactGroup.applied`, ...). */
  async listHookEventKeys(): Promise<string[]> {
    const body = await this.request<unknown>({ method: 'GET', path: '/rest/v1/hooks/event_keys' });
    return Array.isArray(body) ? body.filter((k): k is string => typeof k === 'string') : [];
  }

  /** The account's hook subscriptions, whoever made them (other integrations' too). */
  async listHooks(): Promise<KeapRestHook[]> {
    const body = await this.request<unknown>({ method: 'GET', path: '/rest/v1/hooks' });
    return (Array.isArray(body) ? body : []).flatMap((h) => {
      const hook = toRestHook(h);
      return hook ? [hook] : [];
    });
  }

  /** Subscribes `hookUrl` to `eventKey`; Keap then posts the X-Hook-Secret handshake to it before answering. */
  async createHook(eventKey: string, hookUrl: string): Promise<KeapRestHook> {
    return requireRestHook(await this.request<unknown>({ method: 'POST', path: '/rest/v1/hooks', body: { eventKey, hookUrl } }), 'POST', '/rest/v1/hooks');
  }

  async deleteHook(key: string): Promise<void> {
    await this.request({ method: 'DELETE', path: `/rest/v1/hooks/${encodeURIComponent(key)}` });
  }

  /** Asks Keap to do the handshake again: an Inactive or Unverified hook becomes Verified when the receiver echoes it. */
  async verifyHook(key: string): Promise<KeapRestHook> {
    const path = `/rest/v1/hooks/${encodeURIComponent(key)}/verify`;
    return requireRestHook(await this.request<unknown>({ method: 'POST', path }), 'POST', path);
  }

  /**
   * Whether Keap accepts `apiKey`, without storing or using it for anything else: one read of the contact model with
   * that key, through the same limiter and retries as every call. Resolves with the account's custom field count;
   * rejects with the Keap error (a 401 for a key Keap refuses).
   */
  async testApiKey(apiKey: string): Promise<{ customFields: number }> {
    const body = await this.request<Record<string, unknown>>({ method: 'GET', path: '/rest/v2/contacts/model', apiKey });
    return { customFields: Array.isArray(body.custom_fields) ? body.custom_fields.length : 0 };
  }

  private async fetchContactModel(): Promise<KeapContactModel> {
    const body = await this.request<Record<string, unknown>>({ method: 'GET', path: '/rest/v2/contacts/model' });
    const customFields = (Array.isArray(body.custom_fields) ? (body.custom_fields as unknown[]) : []).flatMap((f): KeapCustomFieldDefinition[] => {
      const field = (typeof f === 'object' && f !== null ? f : {}) as Record<string, unknown>;
      if ((typeof field.id !== 'string' && typeof field.id !== 'number') || typeof field.label !== 'string') return [];
      return [
        {
          id: String(field.id),
          label: field.label,
          fieldName: typeof field.field_name === 'string' ? field.field_name : null,
          fieldType: typeof field.field_type === 'string' ? field.field_type : null,
        },
      ];
    });
    const optionalProperties = Array.isArray(body.optional_properties) ? body.optional_properties.filter((p): p is string => typeof p === 'string') : [];
    const value = { customFields, optionalProperties };
    this.model = { value, fetchedAt: this.clock.now() };
    return value;
  }

  /** One API call with retries for transient failures (see maxRetries). */
  private async request<T = unknown>(spec: RequestSpec): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return (await this.send(spec, attempt)) as T;
      } catch (err) {
        if (!(err instanceof KeapRetryableError) || err.reason === 'timeout' || attempt >= this.maxRetries) throw err;
        if (spec.notIdempotent && !err.throttled) throw err;
        // A long throttle (a used-up minute or day) is not slept through inside a job: the caller reschedules.
        if (err.throttled && err.retryAfterMs > MAX_INLINE_THROTTLE_WAIT_MS) throw err;
        // A 429 has paused the limiter, and the retry queues behind that pause; others back off with jitter.
        if (!err.throttled) await this.clock.sleep(Math.round(err.retryAfterMs * (0.8 + 0.4 * Math.random())));
        this.logger.debug({ method: spec.method, path: spec.path, attempt: attempt + 1, reason: err.reason }, 'keap call retrying');
      }
    }
  }

  /** One attempt: waits for the limiter, sends, feeds Keap's headers back, and on a 401 under OAuth refreshes once. */
  private async send(spec: RequestSpec, attempt: number): Promise<unknown> {
    const url = this.url(spec.path, spec.query);
    // Read once per attempt: a key changed meanwhile applies to the next attempt, never half-way through one.
    const apiKey = spec.apiKey ?? this.apiKeySource();
    let token = apiKey ? undefined : await this.bearerToken();
    for (let refreshed = false; ; refreshed = true) {
      await this.limiter.acquire();
      const headers: Record<string, string> = { accept: 'application/json' };
      if (apiKey) headers['x-keap-api-key'] = apiKey;
      else if (token !== undefined) headers.authorization = `Bearer ${token}`;
      if (spec.body !== undefined) headers['content-type'] = 'application/json';
      if (spec.headers) Object.assign(headers, spec.headers);

      const started = performance.now();
      let res: Response;
      let text: string;
      try {
        res = await this.fetchImpl(url, {
          method: spec.method,
          headers,
          ...(spec.body !== undefined ? { body: JSON.stringify(spec.body) } : {}),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        text = await res.text();
      } catch (err) {
        const failure = keapFetchFailure(err, { method: spec.method, path: spec.path, timeoutMs: this.timeoutMs });
        this.logger.debug({ method: spec.method, path: spec.path, status: 0, ms: Math.round(performance.now() - started), error: failure.reason }, 'keap call');
        if (failure.reason === 'network') throw withBackoff(failure, attempt);
        throw failure;
      }
      const heldMs = this.limiter.observe(res.headers, res.status);
      this.logger.debug({ method: spec.method, path: spec.path, status: res.status, ms: Math.round(performance.now() - started) }, 'keap call');

      const body = parseBody(text);
      if (res.ok) {
        if (body.invalid) {
          throw new KeapRetryableError(`Keap ${spec.method} ${spec.path} answered ${res.status} with a body that is not JSON`, {
            status: res.status, method: spec.method, path: spec.path, reason: 'server', retryAfterMs: backoffMs(attempt),
          });
        }
        return body.value;
      }
      if (res.status === 401 && this.oauth && token !== undefined && !refreshed) {
        token = await this.oauth.accessTokenAfterUnauthorized(token);
        continue;
      }
      const error = this.errorFor(spec, res.status, body.value, heldMs, attempt, apiKey ?? token);
      if (res.status === 401 && this.oauth && token !== undefined) {
        // A 401 to a token just refreshed: Keap has not caught up with it yet (or it expired once more). Worth another
        // try after a pause; credentials that are really gone show up as a refused refresh on that try.
        throw new KeapRetryableError(error.message, {
          status: 401, method: spec.method, path: spec.path, keapMessage: error.keapMessage, reason: 'server', retryAfterMs: backoffMs(attempt),
        });
      }
      throw error;
    }
  }

  private async bearerToken(): Promise<string | undefined> {
    if (this.oauth) return this.oauth.accessToken();
    throw new KeapPermanentError('Keap is not configured: set KEAP_API_KEY, or KEAP_CLIENT_ID and KEAP_CLIENT_SECRET and connect Keap', {
      status: 401,
      method: 'GET',
      path: '/rest',
    });
  }

  /** `credential`: the key or token the request carried, kept out of the message should Keap quote it. */
  private errorFor(spec: RequestSpec, status: number, body: unknown, heldMs: number, attempt: number, credential: string | undefined): KeapError {
    const keapMessage = keapMessageOf(body, credential ? [...this.secrets, credential] : this.secrets);
    const details = { status, method: spec.method, path: spec.path, keapMessage };
    const message = `Keap ${spec.method} ${spec.path} failed with ${status}${keapMessage ? `: ${keapMessage}` : ''}`;
    if (status === 429) {
      return new KeapRetryableError(message, { ...details, reason: 'throttled', retryAfterMs: Math.max(heldMs, 1_000) });
    }
    if (status >= 500 || status === 408) {
      return new KeapRetryableError(message, { ...details, reason: 'server', retryAfterMs: backoffMs(attempt) });
    }
    return new KeapPermanentError(message, details);
  }

  private url(path: string, query: Query | undefined): string {
    const url = new URL(`${this.apiUrl}${path}`);
    for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined) url.searchParams.set(key, String(value));
    return url.toString();
  }
}

/**
 * The longest `ids==...` filter sent in one URL, as it goes on the wire (each comma encoded as %2C): about 600
 * seven-digit ids. HTTP gateways commonly refuse request lines past 8 KB, and Keap documents no limit of its own.
 */
export const MAX_ID_FILTER_CHARS = 6_000;

/** `ids` split into the fewest chunks whose encoded `ids==` filter stays within MAX_ID_FILTER_CHARS. */
export function idFilterChunks(ids: readonly number[]): number[][] {
  const chunks: number[][] = [];
  let chunk: number[] = [];
  let length = 'ids%3D%3D'.length;
  for (const id of ids) {
    const added = String(id).length + (chunk.length > 0 ? 3 : 0);
    if (chunk.length > 0 && (length + added > MAX_ID_FILTER_CHARS || chunk.length >= V2_MAX_PAGE_SIZE)) {
      chunks.push(chunk);
      chunk = [];
      length = 'ids%3D%3D'.length;
    }
    length += String(id).length + (chunk.length > 0 ? 3 : 0);
    chunk.push(id);
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

function pageSizeOf(pageSize: number | undefined): number {
  return Math.min(Math.max(1, Math.trunc(pageSize ?? V2_MAX_PAGE_SIZE)), V2_MAX_PAGE_SIZE);
}

function contactsOf(body: Record<string, unknown>): KeapContact[] {
  return (Array.isArray(body.contacts) ? (body.contacts as unknown[]) : []).flatMap((c) => {
    if (typeof c !== 'object' || c === null) return [];
    const contact = normalizeContact(c as Record<string, unknown>, 0);
    return contact.id > 0 ? [contact] : [];
  });
}

function countOf(body: Record<string, unknown>, method: string, path: string): number {
  if (typeof body.count !== 'number' || !Number.isSafeInteger(body.count) || body.count < 0) {
    throw new KeapPermanentError(`Keap answered ${method} ${path} without a count`, { status: 200, method, path });
  }
  return body.count;
}

/** 1 s, 2 s, 4 s ... up to 30 s: the wait suggested after the `attempt`-th failure (0-based). */
function backoffMs(attempt: number): number {
  return Math.min(30_000, 1_000 * 2 ** attempt);
}

function withBackoff(err: KeapRetryableError, attempt: number): KeapRetryableError {
  if (err.retryAfterMs === backoffMs(attempt)) return err;
  return new KeapRetryableError(err.message, {
    status: err.status, method: err.method, path: err.path, reason: err.reason, retryAfterMs: backoffMs(attempt), cause: err.cause,
  });
}

function parseBody(text: string): { value: unknown; invalid: boolean } {
  if (text.trim() === '') return { value: undefined, invalid: false };
  try {
    return { value: JSON.parse(text) as unknown, invalid: false };
  } catch {
    return { value: text, invalid: true };
  }
}

function positiveId(id: number, what: string, method: string, path: string): string {
  if (!Number.isSafeInteger(id) || id <= 0) throw new KeapPermanentError(`Not a Keap ${what} id: ${JSON.stringify(id)}`, { status: 400, method, path });
  return String(id);
}

/** Full ISO 8601 with milliseconds and zone, which v2's time filters want. */
function isoTime(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new RangeError('a time filter needs a valid date');
  return date.toISOString();
}

/** A v2 page's next token; an empty page ends the listing even if Keap hands one out. */
function nextPageToken(body: Record<string, unknown>, count: number): string | null {
  return count > 0 && typeof body.next_page_token === 'string' && body.next_page_token !== '' ? body.next_page_token : null;
}

function contactIdSegment(id: number, method: string, path: string): string {
  if (!Number.isSafeInteger(id) || id <= 0) {
    throw new KeapPermanentError(`Not a Keap contact id: ${JSON.stringify(id)}`, { status: 400, method, path });
  }
  return String(id);
}

/** A custom field id as v1 types it (int64); the model gives ids as strings. */
function customFieldIdNumber(id: number | string, path: string): number {
  const value = typeof id === 'number' ? id : /^\d+$/.test(id.trim()) ? Number(id.trim()) : NaN;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new KeapPermanentError(`Not a Keap custom field id: ${JSON.stringify(id)}`, { status: 400, method: 'PATCH', path });
  }
  return value;
}

export function findCustomField(fields: readonly KeapCustomFieldDefinition[], labelOrId: string | number): KeapCustomFieldDefinition | undefined {
  const wanted = String(labelOrId).trim();
  const byId = fields.find((f) => f.id === wanted);
  if (byId) return byId;
  const lower = wanted.toLowerCase();
  return fields.find((f) => f.label.trim().toLowerCase() === lower);
}

function emailsOf(raw: unknown): KeapEmailAddress[] {
  if (!Array.isArray(raw)) return [];
  return raw.flatMap((e): KeapEmailAddress[] => {
    const item = (typeof e === 'object' && e !== null ? e : {}) as Record<string, unknown>;
    const email = typeof item.email === 'string' ? item.email.trim() : '';
    return email ? [{ email, field: typeof item.field === 'string' ? item.field : '' }] : [];
  });
}

function primaryEmail(emails: KeapEmailAddress[]): string | null {
  return (emails.find((e) => e.field === 'EMAIL1') ?? emails[0])?.email ?? null;
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** A v2 Contact as the app uses it: numeric ids, EMAIL1 first, '' for absent names. */
export function normalizeContact(raw: Record<string, unknown>, requestedId: number): KeapContact {
  const id = Number(raw.id);
  const emails = emailsOf(raw.email_addresses);
  const customFields = (Array.isArray(raw.custom_fields) ? (raw.custom_fields as unknown[]) : []).flatMap((f): KeapCustomFieldValue[] => {
    const field = (typeof f === 'object' && f !== null ? f : {}) as Record<string, unknown>;
    if (typeof field.id !== 'string' && typeof field.id !== 'number') return [];
    return [{ id: String(field.id), content: field.content ?? null }];
  });
  const tagIds = (Array.isArray(raw.tag_ids) ? (raw.tag_ids as unknown[]) : []).map(Number).filter((t) => Number.isSafeInteger(t));
  return {
    id: Number.isSafeInteger(id) && id > 0 ? id : requestedId,
    email: primaryEmail(emails),
    emails,
    givenName: text(raw.given_name),
    familyName: text(raw.family_name),
    customFields,
    tagIds,
    raw,
  };
}

function normalizeSummary(raw: unknown): KeapContactSummary | null {
  const c = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const id = Number(c.id);
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  const emails = emailsOf(c.email_addresses);
  return {
    id,
    email: primaryEmail(emails),
    emails,
    givenName: text(c.given_name),
    familyName: text(c.family_name),
    lastUpdated: typeof c.last_updated === 'string' ? c.last_updated : null,
  };
}

function toRestHook(value: unknown): KeapRestHook | undefined {
  const h = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  if (typeof h.key !== 'string' || typeof h.eventKey !== 'string') return undefined;
  const status = h.status === 'Verified' || h.status === 'Inactive' ? h.status : 'Unverified';
  return { key: h.key, eventKey: h.eventKey, hookUrl: typeof h.hookUrl === 'string' ? h.hookUrl : '', status };
}

function requireRestHook(value: unknown, method: string, path: string): KeapRestHook {
  const hook = toRestHook(value);
  if (!hook) throw new KeapPermanentError(`Keap answered ${method} ${path} without a hook subscription (no key or eventKey)`, { status: 200, method, path });
  return hook;
}
