/**
 * The Keap records the app works with, normalized from the API's shapes (v2 ids are strings, v1 ids numbers;
 * here contact and tag ids are numbers, custom field ids strings, as v2 and the contact model give them).
 */

export type KeapEmailField = 'EMAIL1' | 'EMAIL2' | 'EMAIL3' | 'EMAIL_FIELD_UNSPECIFIED';

export interface KeapEmailAddress {
  email: string;
  field: KeapEmailField | string;
}

export interface KeapCustomFieldValue {
  /** The custom field's id as Keap's v2 API and contact model give it (a numeric string). */
  id: string;
  /** Keap answers null for a field never set. */
  content: unknown;
}

export interface KeapContact {
  id: number;
  /** EMAIL1 when the contact has it, else the first address; null for a contact without any. */
  email: string | null;
  emails: KeapEmailAddress[];
  /** '' when Keap has none. */
  givenName: string;
  familyName: string;
  customFields: KeapCustomFieldValue[];
  tagIds: number[];
  /** Keap's answer as it came (v2 Contact), for plugins that want a property the app does not map. */
  raw: Record<string, unknown>;
}

export interface KeapContactTag {
  id: number;
  name: string;
  /** The tag category's name; '' for a tag without one. */
  category: string;
}

/** A custom field definition from the contact model. */
export interface KeapCustomFieldDefinition {
  id: string;
  label: string;
  /** Keap's column name, e.g. `Password0`, when given. */
  fieldName: string | null;
  /** e.g. TEXT, DATE, WHOLE_NUMBER, when given. */
  fieldType: string | null;
}

export interface KeapContactModel {
  customFields: KeapCustomFieldDefinition[];
  optionalProperties: string[];
}

/** One contact in a "changed since" listing (v1 RestPartialContact, normalized). */
export interface KeapContactSummary {
  id: number;
  email: string | null;
  emails: KeapEmailAddress[];
  givenName: string;
  familyName: string;
  /** ISO 8601, as Keap gives it; null when missing. */
  lastUpdated: string | null;
}

export interface KeapContactPage {
  contacts: KeapContactSummary[];
  /** How many contacts match in all (Keap's `count`). */
  count: number;
  /** The offset for the next page, or null when this page was the last. */
  nextOffset: number | null;
}

/** A contact a tag was applied to, and when (v2 List Tagged Contacts). */
export interface KeapTaggedContact {
  id: number;
  /** ISO 8601, as Keap gives it; null when missing. */
  appliedTime: string | null;
}

/** An order as the poller hands it on: its ids, status and times, and the whole of what Keap answered. */
export interface KeapOrderSummary {
  id: number;
  contactId: number | null;
  status: string;
  /** ISO 8601, as Keap gives it; null when missing. */
  modificationTime: string | null;
  raw: Record<string, unknown>;
}

/** One page of a v2 list: the items, and the token of the next page (null on the last). */
export interface KeapV2Page<T> {
  items: T[];
  nextPageToken: string | null;
}

/** OAuth tokens as stored; written together, since every refresh rotates the refresh token. */
export interface StoredTokens {
  accessToken: string;
  refreshToken: string;
  /** Epoch milliseconds when the access token stops working. */
  expiresAt: number;
  scope: string | null;
}

export interface KeapTokenStore {
  load(): StoredTokens | null;
  /** Must write both tokens in one atomic step: a lost refresh token is a lost connection. */
  save(tokens: StoredTokens): void;
  /** Forgets the connection (an admin disconnecting Keap). */
  clear(): void;
}

/** One of Keap's throttle or quota header groups, as last reported. */
export interface KeapLimitFigures {
  limit: number | null;
  available: number | null;
  used: number | null;
  /** e.g. second, minute, day */
  timeUnit: string | null;
  interval: number | null;
  /** Quotas only: epoch ms when the bucket resets. */
  expiryTime: number | null;
}

/**
 * The latest figures Keap reported in its response headers (for a dashboard). Each group holds one entry per window:
 * Keap may report several in one header group, pipe-separated (`x-keap-tenant-throttle-limit: 10000|250000` with
 * `-time-unit: minute|day`); an empty list when the response carried none of the group's headers.
 */
export interface KeapRateReport {
  /** Epoch ms of the response that carried them. */
  at: number;
  productThrottle: KeapLimitFigures[];
  productQuota: KeapLimitFigures[];
  tenantThrottle: KeapLimitFigures[];
}

/** A REST hook subscription (v1 `RestHook`): one per event key; only `Verified` ones get deliveries. */
export interface KeapRestHook {
  key: string;
  eventKey: string;
  hookUrl: string;
  status: 'Unverified' | 'Verified' | 'Inactive';
}
