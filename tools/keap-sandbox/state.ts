/**
 * The sandbox's in-memory Keap account: contacts, tags, custom field definitions, and a record of every
 * request it answered. Ids are numbers here (Keap stores them as integers); the v2 routes turn them into the
 * strings the v2 spec asks for. Tests read and change this state directly to set up a scenario.
 */

export type EmailField = 'EMAIL1' | 'EMAIL2' | 'EMAIL3';

export interface SandboxEmailAddress {
  email: string;
  field: EmailField;
}

/** The v2 spelling of a custom field type; the v1 routes translate (TEXT → Text). */
export type SandboxFieldType = 'TEXT' | 'TEXT_AREA' | 'WHOLE_NUMBER' | 'DECIMAL_NUMBER' | 'DATE' | 'YES_NO' | 'EMAIL' | 'WEBSITE';

export interface SandboxCustomField {
  id: number;
  label: string;
  /** Keap's database column name for the field, e.g. `Password0`. */
  field_name: string;
  field_type: SandboxFieldType;
}

export interface SandboxTagCategory {
  id: number;
  name: string;
}

export interface SandboxTag {
  id: number;
  name: string;
  description?: string;
  category?: SandboxTagCategory;
  create_time: string;
}

/** An order (what `GET /rest/v2/orders` lists); amounts in the currency's smallest unit, as CurrencyValue has them. */
export interface SandboxOrder {
  id: number;
  contact_id: number;
  title: string;
  status: 'DRAFT' | 'SENT' | 'VIEWED' | 'PAID';
  total: number;
  creation_time: string;
  modification_time: string;
}

export interface SandboxContact {
  id: number;
  given_name?: string;
  family_name?: string;
  email_addresses: SandboxEmailAddress[];
  /** Values by custom field id; a field never set is absent (Keap answers `content: null` for it). */
  custom_fields: Map<number, unknown>;
  tag_ids: number[];
  /** When each tag in `tag_ids` was applied (ISO 8601). */
  tag_applied_at: Map<number, string>;
  date_created: string;
  last_updated: string;
}

/** How a request authenticated: an API key (PAT/SAK), an OAuth access token, client credentials (/token), or not at all. */
export type CredentialKind = 'key' | 'bearer' | 'client' | 'none';

export interface RecordedRequest {
  method: string;
  /** Path without the query string, e.g. `/crm/rest/v2/contacts/101`. */
  path: string;
  query: Record<string, string | string[]>;
  /** The parsed JSON body of API requests (never recorded for /token, which carries secrets). */
  body?: unknown;
  /** 0 until the answer's status line is written. */
  status: number;
  /** When the request arrived, in milliseconds since the epoch (sandbox clock). */
  time: number;
  /** How long the answer took, in milliseconds. */
  durationMs: number;
  credential: CredentialKind;
  /**
   * The misbehaviour the sandbox injected, when it did (see faults.ts), e.g. `status 503`, `drop after-processing`,
   * `tokens expired`. A dropped request keeps status 0 unless its status line went out (`drop mid-body`).
   */
  fault?: string;
}

/** A contact to add. Custom field keys may be a field id or its label (`{ Password: 'x' }`). */
export interface NewSandboxContact {
  id?: number;
  given_name?: string;
  family_name?: string;
  /** Shorthand for one EMAIL1 address. */
  email?: string;
  email_addresses?: SandboxEmailAddress[];
  custom_fields?: Record<string, unknown>;
  tag_ids?: number[];
  date_created?: string;
  /** Normally set by the sandbox; seeds pass one to spread contacts over time. */
  last_updated?: string;
}

export interface SandboxContactChanges {
  given_name?: string;
  family_name?: string;
  email_addresses?: SandboxEmailAddress[];
  /** Merged into the contact's values; `null` clears a field. Keys are ids or labels. */
  custom_fields?: Record<string, unknown>;
  tag_ids?: number[];
}

/**
 * A change to the account, as Keap's REST hooks name it: `contact.add`, `contact.edit`, `contact.delete`,
 * `contactGroup.add` (a tag created), `contactGroup.applied` and `contactGroup.removed` (a tag put on or taken off a
 * contact). The hook dispatcher (hooks.ts) listens for these; for the two tag events `id` is the contact's (see the
 * choices in index.ts).
 */
export interface SandboxChange {
  eventKey: string;
  objectType: 'contact' | 'contactGroup' | 'order';
  id: number;
  /** When the change happened (ISO 8601, sandbox clock). */
  timestamp: string;
}

export type SandboxHookStatus = 'Unverified' | 'Verified' | 'Inactive';

/** A REST hook subscription, as `GET /v1/hooks/{key}` answers it. */
export interface SandboxHook {
  key: string;
  eventKey: string;
  hookUrl: string;
  status: SandboxHookStatus;
}

/**
 * One POST the sandbox made to a hook URL (or, for `dropped`, one batch it gave up without sending):
 * - `verified` / `unverified`: a handshake (`X-Hook-Secret`) the receiver echoed with a 200, or did not;
 * - `delivered`: an event batch answered 2xx or 3xx;
 * - `failed`: no answer within the timeout, a refused connection, or a status < 200 or >= 400 other than 410
 *   (retried at `nextAttemptAt` unless this was the last attempt, which made the hook Inactive);
 * - `gone`: the receiver answered 410, which made the hook Inactive at once;
 * - `dropped`: a batch not sent because its hook went Inactive, was deleted or lost its verification first.
 */
export interface HookDeliveryRecord {
  kind: 'handshake' | 'event';
  hookKey: string;
  eventKey: string;
  hookUrl: string;
  /** Event batches: the batch's number, the same across its attempts. */
  batch?: number;
  /** Event batches: 1 for the first attempt, up to 1 + the number of retry delays. */
  attempt?: number;
  /** Event batches: the JSON body sent (the handshake's secret is never recorded). */
  body?: HookDeliveryBody;
  /** When the POST went out (sandbox clock, ms since the epoch). */
  time: number;
  /** The receiver's status; 0 while waiting, and when it never answered. */
  status: number;
  outcome: 'pending' | 'verified' | 'unverified' | 'delivered' | 'failed' | 'gone' | 'dropped';
  /**
   * Why it failed: `no answer within 30000 ms`, a connection error (`ECONNREFUSED`), `injected failure` (not sent),
   * `injected failure after delivery` (sent, then counted as failed).
   */
  error?: string;
  /** A failed batch: when it is tried again. */
  nextAttemptAt?: number;
  /** The hook's status after this attempt, when the attempt changed it. */
  hookStatus?: SandboxHookStatus;
  /** How long the receiver took to answer, in real milliseconds whatever the sandbox clock (0 when not sent). */
  durationMs: number;
}

/** What Keap POSTs to a hook URL (KEAP.md "REST hook deliveries"). */
export interface HookDeliveryBody {
  event_key: string;
  object_type: string;
  object_keys: Array<{ id: number; apiUrl: string; timestamp: string }>;
}

export class SandboxStateError extends Error {
  override name = 'SandboxStateError';
}

export class SandboxState {
  readonly contacts = new Map<number, SandboxContact>();
  readonly tags = new Map<number, SandboxTag>();
  /** Custom field definitions for contacts, by id. */
  readonly customFields = new Map<number, SandboxCustomField>();
  readonly orders = new Map<number, SandboxOrder>();
  readonly requests: RecordedRequest[] = [];
  /** How many answers went out with each status. */
  readonly statusCounts = new Map<number, number>();
  /** REST hook subscriptions by key (the API in routes-hooks.ts, deliveries in hooks.ts). */
  readonly hooks = new Map<string, SandboxHook>();
  /** Every handshake and delivery the sandbox made to a hook URL, oldest first. */
  readonly hookDeliveries: HookDeliveryRecord[] = [];
  private readonly changeListeners = new Set<(change: SandboxChange) => void>();

  private nextContactId = 101;
  private nextTagId = 91;
  private nextCustomFieldId = 12;
  private nextOrderId = 1;
  private lastStamp = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** A fresh ISO timestamp, strictly later than the previous one, so `since` listings order deterministically. */
  stamp(): string {
    this.lastStamp = Math.max(this.now(), this.lastStamp + 1);
    return new Date(this.lastStamp).toISOString();
  }

  /** Calls `listener` after every change to contacts and tags; returns a function that stops it. */
  onChange(listener: (change: SandboxChange) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  private emit(eventKey: string, objectType: SandboxChange['objectType'], id: number, timestamp: string): void {
    for (const listener of this.changeListeners) listener({ eventKey, objectType, id, timestamp });
  }

  contact(id: number): SandboxContact | undefined {
    return this.contacts.get(id);
  }

  addContact(input: NewSandboxContact = {}): SandboxContact {
    const id = input.id ?? this.nextContactId;
    if (this.contacts.has(id)) throw new SandboxStateError(`contact ${id} already exists`);
    this.nextContactId = Math.max(this.nextContactId, id + 1);
    const stamp = input.last_updated ?? this.stamp();
    const emails = input.email_addresses ?? (input.email === undefined ? [] : [{ email: input.email, field: 'EMAIL1' as const }]);
    const contact: SandboxContact = {
      id,
      email_addresses: emails.map((e) => ({ ...e })),
      custom_fields: new Map(),
      tag_ids: [],
      tag_applied_at: new Map(),
      date_created: input.date_created ?? stamp,
      last_updated: stamp,
    };
    if (input.given_name !== undefined) contact.given_name = input.given_name;
    if (input.family_name !== undefined) contact.family_name = input.family_name;
    for (const [key, value] of Object.entries(input.custom_fields ?? {})) {
      contact.custom_fields.set(this.requireCustomField(key).id, value);
    }
    for (const tagId of input.tag_ids ?? []) this.attachTag(contact, tagId, stamp);
    this.contacts.set(id, contact);
    this.emit('contact.add', 'contact', id, stamp);
    if (contact.tag_ids.length > 0) this.emit('contactGroup.applied', 'contact', id, stamp);
    return contact;
  }

  /** Changes a contact as a Keap user or API call would; `last_updated` moves forward. */
  updateContact(id: number, changes: SandboxContactChanges): SandboxContact {
    const contact = this.requireContact(id);
    // Resolve every field name first, so a bad one changes nothing.
    const fieldValues = Object.entries(changes.custom_fields ?? {}).map(([key, value]) => [this.requireCustomField(key).id, value] as const);
    for (const tagId of changes.tag_ids ?? []) this.requireTag(tagId);
    const stamp = this.stamp();
    if (changes.given_name !== undefined) contact.given_name = changes.given_name;
    if (changes.family_name !== undefined) contact.family_name = changes.family_name;
    if (changes.email_addresses !== undefined) contact.email_addresses = changes.email_addresses.map((e) => ({ ...e }));
    for (const [fieldId, value] of fieldValues) {
      if (value === null) contact.custom_fields.delete(fieldId);
      else contact.custom_fields.set(fieldId, value);
    }
    let removed = false;
    let applied = false;
    if (changes.tag_ids !== undefined) {
      const wanted = new Set(changes.tag_ids);
      for (const tagId of contact.tag_ids.filter((t) => !wanted.has(t))) removed = this.detachTag(contact, tagId) || removed;
      for (const tagId of changes.tag_ids) applied = this.attachTag(contact, tagId, stamp) || applied;
    }
    contact.last_updated = stamp;
    // Tags are their own events at Keap (contactGroup.*); a change of tags alone is no contact.edit.
    const { tag_ids: _tags, ...fieldChanges } = changes;
    if (Object.values(fieldChanges).some((v) => v !== undefined)) this.emit('contact.edit', 'contact', id, stamp);
    if (applied) this.emit('contactGroup.applied', 'contact', id, stamp);
    if (removed) this.emit('contactGroup.removed', 'contact', id, stamp);
    return contact;
  }

  setCustomField(contactId: number, field: string | number, content: unknown): SandboxContact {
    return this.updateContact(contactId, { custom_fields: { [String(field)]: content } });
  }

  /** The value of a contact's custom field, by field id or label. */
  customFieldValue(contactId: number, field: string | number): unknown {
    return this.requireContact(contactId).custom_fields.get(this.requireCustomField(field).id);
  }

  applyTag(contactId: number, tagId: number): SandboxContact {
    const contact = this.requireContact(contactId);
    this.requireTag(tagId);
    const stamp = this.stamp();
    const attached = this.attachTag(contact, tagId, stamp);
    contact.last_updated = stamp;
    if (attached) this.emit('contactGroup.applied', 'contact', contactId, stamp);
    return contact;
  }

  removeTag(contactId: number, tagId: number): SandboxContact {
    const contact = this.requireContact(contactId);
    const detached = this.detachTag(contact, tagId);
    const stamp = this.stamp();
    contact.last_updated = stamp;
    if (detached) this.emit('contactGroup.removed', 'contact', contactId, stamp);
    return contact;
  }

  /** Deletes a contact, as `DELETE /v1/contacts/{id}` or a Keap user would. */
  deleteContact(id: number): void {
    this.requireContact(id);
    this.contacts.delete(id);
    this.emit('contact.delete', 'contact', id, this.stamp());
  }

  /** An order for a contact, as a checkout or a Keap user makes one (`order.add`). */
  addOrder(input: { id?: number; contact_id: number; title?: string; status?: SandboxOrder['status']; total?: number; creation_time?: string }): SandboxOrder {
    this.requireContact(input.contact_id);
    const id = input.id ?? this.nextOrderId;
    if (this.orders.has(id)) throw new SandboxStateError(`order ${id} already exists`);
    this.nextOrderId = Math.max(this.nextOrderId, id + 1);
    const stamp = input.creation_time ?? this.stamp();
    const order: SandboxOrder = {
      id,
      contact_id: input.contact_id,
      title: input.title ?? `Order ${id}`,
      status: input.status ?? 'DRAFT',
      total: input.total ?? 0,
      creation_time: stamp,
      modification_time: stamp,
    };
    this.orders.set(id, order);
    this.emit('order.add', 'order', id, stamp);
    return order;
  }

  /** Changes an order (paid, retitled): its modification_time moves forward (`order.edit`). */
  updateOrder(id: number, changes: { title?: string; status?: SandboxOrder['status']; total?: number }): SandboxOrder {
    const order = this.orders.get(id);
    if (!order) throw new SandboxStateError(`no order ${id}`);
    if (changes.title !== undefined) order.title = changes.title;
    if (changes.status !== undefined) order.status = changes.status;
    if (changes.total !== undefined) order.total = changes.total;
    order.modification_time = this.stamp();
    this.emit('order.edit', 'order', id, order.modification_time);
    return order;
  }

  addTag(input: { id?: number; name: string; description?: string; category?: SandboxTagCategory; create_time?: string }): SandboxTag {
    const id = input.id ?? this.nextTagId;
    if (this.tags.has(id)) throw new SandboxStateError(`tag ${id} already exists`);
    this.nextTagId = Math.max(this.nextTagId, id + 1);
    const tag: SandboxTag = { id, name: input.name, create_time: input.create_time ?? this.stamp() };
    if (input.description !== undefined) tag.description = input.description;
    if (input.category !== undefined) tag.category = { ...input.category };
    this.tags.set(id, tag);
    this.emit('contactGroup.add', 'contactGroup', id, tag.create_time);
    return tag;
  }

  addCustomField(input: { id?: number; label: string; field_type?: SandboxFieldType; field_name?: string }): SandboxCustomField {
    const id = input.id ?? this.nextCustomFieldId;
    if (this.customFields.has(id)) throw new SandboxStateError(`custom field ${id} already exists`);
    if (this.customField(input.label)) throw new SandboxStateError(`a custom field labelled "${input.label}" already exists`);
    this.nextCustomFieldId = Math.max(this.nextCustomFieldId, id + 1);
    // Keap derives the column name from the label and a counter, e.g. "Favorite Color" → FavoriteColor0.
    const field: SandboxCustomField = {
      id,
      label: input.label,
      field_name: input.field_name ?? `${input.label.replace(/[^A-Za-z0-9]/g, '')}${this.customFields.size}`,
      field_type: input.field_type ?? 'TEXT',
    };
    this.customFields.set(id, field);
    return field;
  }

  /** A custom field by id (number or numeric string) or by label (case-insensitive, as users type it). */
  customField(key: string | number): SandboxCustomField | undefined {
    const asNumber = typeof key === 'number' ? key : /^\d+$/.test(key) ? Number(key) : undefined;
    if (asNumber !== undefined) return this.customFields.get(asNumber);
    const label = String(key).toLowerCase();
    return [...this.customFields.values()].find((f) => f.label.toLowerCase() === label);
  }

  requireCustomField(key: string | number): SandboxCustomField {
    const field = this.customField(key);
    if (!field) throw new SandboxStateError(`no custom field ${JSON.stringify(key)}`);
    return field;
  }

  requireContact(id: number): SandboxContact {
    const contact = this.contacts.get(id);
    if (!contact) throw new SandboxStateError(`no contact ${id}`);
    return contact;
  }

  requireTag(id: number): SandboxTag {
    const tag = this.tags.get(id);
    if (!tag) throw new SandboxStateError(`no tag ${id}`);
    return tag;
  }

  /** Recorded requests matching a filter, e.g. `requestsTo('GET', '/crm/rest/v2/contacts/101')`. */
  requestsTo(method: string, path: string | RegExp): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && (typeof path === 'string' ? r.path === path : path.test(r.path)));
  }

  countStatus(status: number): void {
    this.statusCounts.set(status, (this.statusCounts.get(status) ?? 0) + 1);
  }

  /** True when the tag was not on the contact before. */
  private attachTag(contact: SandboxContact, tagId: number, stamp: string): boolean {
    this.requireTag(tagId);
    if (contact.tag_ids.includes(tagId)) return false;
    contact.tag_ids.push(tagId);
    contact.tag_applied_at.set(tagId, stamp);
    return true;
  }

  /** True when the tag was on the contact. */
  private detachTag(contact: SandboxContact, tagId: number): boolean {
    const had = contact.tag_ids.includes(tagId);
    contact.tag_ids = contact.tag_ids.filter((t) => t !== tagId);
    contact.tag_applied_at.delete(tagId);
    return had;
  }
}
