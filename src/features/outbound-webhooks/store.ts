import { isoNow, type Db } from '../../core/db.js';
import type { DeliveryStatus, DestinationMethod } from './types.js';

export interface ConnectionRow {
  id: number;
  name: string;
  description: string;
  base_url: string;
  port: number | null;
  auth_type: 'none' | 'basic' | 'bearer' | 'oauth2';
  auth_settings: string;
  auth_secrets: string | null;
  signing_secret: string;
  previous_secret: string | null;
  previous_secret_until: number | null;
  created_at: string;
  updated_at: string;
}

export interface DestinationRow {
  id: number;
  connection_id: number;
  name: string;
  description: string;
  method: DestinationMethod;
  content_type: string;
  path: string;
  template: string | null;
  events: string;
  filter_tag_id: number | null;
  filter_role: string | null;
  enabled: 0 | 1;
  disabled_reason: string | null;
  disabled_at: string | null;
  failing_since: number | null;
  created_at: string;
  updated_at: string;
}

export interface DeliveryRow {
  id: number;
  destination_id: number;
  event_id: string;
  event_type: string;
  body: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: number | null;
  lease_until: number | null;
  last_status: number | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
  delivered_at: string | null;
}

export interface AttemptRow {
  id: number;
  delivery_id: number;
  attempt: number;
  request_method: string;
  request_url: string;
  request_headers: string;
  response_status: number | null;
  response_headers: string | null;
  response_body: string | null;
  response_truncated: 0 | 1;
  error: string | null;
  duration_ms: number;
  at: string;
}

export type NewConnectionRow = Omit<ConnectionRow, 'id' | 'created_at' | 'updated_at'>;
export type NewDestinationRow = Omit<DestinationRow, 'id' | 'created_at' | 'updated_at' | 'disabled_at' | 'failing_since'>;

export interface NewDelivery {
  destinationId: number;
  eventId: string;
  eventType: string;
  body: string;
  createdAt: string;
  dueAt: number;
  /** Set when the delivery cannot be made (its template failed on this event): recorded failed, with this reason. */
  error?: string;
}

export interface DeliveryFilter {
  destinationId?: number;
  status?: DeliveryStatus;
  eventType?: string;
  eventId?: string;
  /** ISO times, created_at in [from, to). */
  from?: string;
  to?: string;
}

export interface NewAttempt {
  deliveryId: number;
  attempt: number;
  method: string;
  url: string;
  headers: Record<string, string>;
  responseStatus: number | null;
  responseHeaders: Record<string, string> | null;
  responseBody: string | null;
  responseTruncated: boolean;
  error: string | null;
  durationMs: number;
  at: number;
}

/** How an attempt ended, as the dispatcher records it. */
export type AttemptOutcome =
  | { kind: 'delivered'; status: number }
  | { kind: 'retry'; status: number | null; error: string; at: number }
  | { kind: 'failed' | 'dead'; status: number | null; error: string };

/** The outbound webhooks' SQL: connections, destinations, deliveries and their attempts. */
export class OutboundStore {
  private readonly s;

  constructor(private readonly db: Db) {
    const p = db.prepare.bind(db);
    this.s = {
      connections: p<[], ConnectionRow>('SELECT * FROM outbound_connections ORDER BY name'),
      connection: p<[number], ConnectionRow>('SELECT * FROM outbound_connections WHERE id = ?'),
      insertConnection: p(
        `INSERT INTO outbound_connections (name, description, base_url, port, auth_type, auth_settings, auth_secrets, signing_secret, previous_secret, previous_secret_until, created_at, updated_at)
         VALUES (@name, @description, @base_url, @port, @auth_type, @auth_settings, @auth_secrets, @signing_secret, @previous_secret, @previous_secret_until, @now, @now)`,
      ),
      updateConnection: p(
        `UPDATE outbound_connections SET name = @name, description = @description, base_url = @base_url, port = @port, auth_type = @auth_type,
           auth_settings = @auth_settings, auth_secrets = @auth_secrets, signing_secret = @signing_secret, previous_secret = @previous_secret,
           previous_secret_until = @previous_secret_until, updated_at = @now WHERE id = @id`,
      ),
      deleteConnection: p<[number]>('DELETE FROM outbound_connections WHERE id = ?'),
      destinations: p<[], DestinationRow>('SELECT * FROM outbound_destinations ORDER BY connection_id, name'),
      destinationsOf: p<[number], DestinationRow>('SELECT * FROM outbound_destinations WHERE connection_id = ? ORDER BY name'),
      enabledDestinations: p<[], DestinationRow>('SELECT * FROM outbound_destinations WHERE enabled = 1 ORDER BY id'),
      enabledEvents: p<[], string>('SELECT events FROM outbound_destinations WHERE enabled = 1').pluck(),
      destination: p<[number], DestinationRow>('SELECT * FROM outbound_destinations WHERE id = ?'),
      insertDestination: p(
        `INSERT INTO outbound_destinations (connection_id, name, description, method, content_type, path, template, events, filter_tag_id, filter_role, enabled, disabled_reason, created_at, updated_at)
         VALUES (@connection_id, @name, @description, @method, @content_type, @path, @template, @events, @filter_tag_id, @filter_role, @enabled, @disabled_reason, @now, @now)`,
      ),
      updateDestination: p(
        `UPDATE outbound_destinations SET name = @name, description = @description, method = @method, content_type = @content_type, path = @path,
           template = @template, events = @events, filter_tag_id = @filter_tag_id, filter_role = @filter_role, enabled = @enabled,
           disabled_reason = @disabled_reason,
           disabled_at = CASE WHEN @enabled = 1 THEN NULL ELSE coalesce(disabled_at, @now) END,
           failing_since = CASE WHEN @enabled = 1 AND enabled = 0 THEN NULL ELSE failing_since END,
           updated_at = @now WHERE id = @id`,
      ),
      deleteDestination: p<[number]>('DELETE FROM outbound_destinations WHERE id = ?'),
      disableDestination: p<[string, string, string, number]>(
        'UPDATE outbound_destinations SET enabled = 0, disabled_reason = ?, disabled_at = ?, updated_at = ? WHERE id = ? AND enabled = 1',
      ),
      markFailing: p<[number, number]>('UPDATE outbound_destinations SET failing_since = coalesce(failing_since, ?) WHERE id = ?'),
      markHealthy: p<[number]>('UPDATE outbound_destinations SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL'),
      disabledByDispatcher: p<[], DestinationRow>('SELECT * FROM outbound_destinations WHERE enabled = 0 AND disabled_reason IS NOT NULL ORDER BY disabled_at DESC'),
      insertDelivery: p(
        `INSERT INTO outbound_deliveries (destination_id, event_id, event_type, body, status, last_error, next_attempt_at, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (destination_id, event_id) DO NOTHING`,
      ),
      delivery: p<[number], DeliveryRow>('SELECT * FROM outbound_deliveries WHERE id = ?'),
      claim: p<[number, string, number, number, number], DeliveryRow>(
        `UPDATE outbound_deliveries SET status = 'delivering', lease_until = ?, attempts = attempts + 1, updated_at = ?
         WHERE id IN (SELECT id FROM outbound_deliveries WHERE status = 'queued' AND destination_id = ? AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?)
         RETURNING *`,
      ),
      nextDueOf: p<[number], { at: number | null }>("SELECT min(next_attempt_at) AS at FROM outbound_deliveries WHERE status = 'queued' AND destination_id = ?"),
      requeueLeased: p<[string, number]>(
        `UPDATE outbound_deliveries SET status = 'queued', next_attempt_at = lease_until, lease_until = NULL, updated_at = ? WHERE status = 'delivering' AND lease_until <= ?`,
      ),
      requeueAllLeased: p<[number, string]>(
        "UPDATE outbound_deliveries SET status = 'queued', next_attempt_at = ?, lease_until = NULL, updated_at = ? WHERE status = 'delivering'",
      ),
      delivered: p<[number, string, string, number]>(
        "UPDATE outbound_deliveries SET status = 'delivered', last_status = ?, last_error = NULL, lease_until = NULL, next_attempt_at = NULL, delivered_at = ?, updated_at = ? WHERE id = ?",
      ),
      retry: p<[number | null, string, number, string, number]>(
        "UPDATE outbound_deliveries SET status = 'queued', last_status = ?, last_error = ?, lease_until = NULL, next_attempt_at = ?, updated_at = ? WHERE id = ?",
      ),
      giveUp: p<[string, number | null, string, string, number]>(
        'UPDATE outbound_deliveries SET status = ?, last_status = ?, last_error = ?, lease_until = NULL, next_attempt_at = NULL, updated_at = ? WHERE id = ?',
      ),
      insertAttempt: p(
        `INSERT INTO outbound_delivery_attempts (delivery_id, attempt, request_method, request_url, request_headers, response_status, response_headers, response_body, response_truncated, error, duration_ms, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      attempts: p<[number], AttemptRow>('SELECT * FROM outbound_delivery_attempts WHERE delivery_id = ? ORDER BY attempt, id'),
      replay: p<[number, string, number]>(
        "UPDATE outbound_deliveries SET status = 'queued', attempts = 0, next_attempt_at = ?, lease_until = NULL, updated_at = ? WHERE id = ? AND status IN ('delivered', 'failed', 'dead')",
      ),
      replayFailed: p<[number, string, number, string, string]>(
        `UPDATE outbound_deliveries SET status = 'queued', attempts = 0, next_attempt_at = ?, lease_until = NULL, updated_at = ?
         WHERE destination_id = ? AND status IN ('failed', 'dead') AND created_at >= ? AND created_at < ?`,
      ),
      purge: p<[string]>("DELETE FROM outbound_deliveries WHERE status IN ('delivered', 'failed', 'dead') AND updated_at < ?"),
    };
  }

  /** Runs `work` in one transaction (a savepoint inside another). */
  inTransaction<T>(work: () => T): T {
    return this.db.transaction(work)();
  }

  // Connections.

  connections(): ConnectionRow[] {
    return this.s.connections.all();
  }

  connection(id: number): ConnectionRow | undefined {
    return this.s.connection.get(id);
  }

  insertConnection(row: NewConnectionRow, now: number): number {
    return Number(this.s.insertConnection.run({ ...row, now: isoNow(now) }).lastInsertRowid);
  }

  updateConnection(row: ConnectionRow, now: number): void {
    this.s.updateConnection.run({ ...row, now: isoNow(now) });
  }

  deleteConnection(id: number): boolean {
    return this.s.deleteConnection.run(id).changes > 0;
  }

  // Destinations.

  destinations(connectionId?: number): DestinationRow[] {
    return connectionId === undefined ? this.s.destinations.all() : this.s.destinationsOf.all(connectionId);
  }

  enabledDestinations(): DestinationRow[] {
    return this.s.enabledDestinations.all();
  }

  /** The event patterns of each enabled destination. */
  enabledEventPatterns(): string[][] {
    return this.s.enabledEvents.all().map((events) => JSON.parse(events) as string[]);
  }

  destination(id: number): DestinationRow | undefined {
    return this.s.destination.get(id);
  }

  insertDestination(row: NewDestinationRow, now: number): number {
    return Number(this.s.insertDestination.run({ ...row, now: isoNow(now) }).lastInsertRowid);
  }

  updateDestination(row: DestinationRow, now: number): void {
    this.s.updateDestination.run({ ...row, now: isoNow(now) });
  }

  deleteDestination(id: number): boolean {
    return this.s.deleteDestination.run(id).changes > 0;
  }

  /** Disables an enabled destination; false when it was disabled already. */
  disableDestination(id: number, reason: string, now: number): boolean {
    return this.s.disableDestination.run(reason, isoNow(now), isoNow(now), id).changes > 0;
  }

  /** Destinations the dispatcher turned off (a 410, or failing for days), newest first, for the dashboard. */
  disabledWithReason(): DestinationRow[] {
    return this.s.disabledByDispatcher.all();
  }

  // Deliveries.

  /** Records deliveries; one already recorded for the same destination and event is left as it is. Returns how many were new. */
  insertDeliveries(deliveries: readonly NewDelivery[], now: number): number {
    let added = 0;
    const at = isoNow(now);
    for (const d of deliveries) {
      const failed = d.error !== undefined;
      added += this.s.insertDelivery.run(d.destinationId, d.eventId, d.eventType, d.body, failed ? 'failed' : 'queued', d.error ?? null, failed ? null : d.dueAt, d.createdAt, at).changes;
    }
    return added;
  }

  delivery(id: number): DeliveryRow | undefined {
    return this.s.delivery.get(id);
  }

  /** Takes up to `limit` due deliveries of one destination (oldest due first), leased until `leaseUntil`. */
  claim(destinationId: number, now: number, limit: number, leaseUntil: number): DeliveryRow[] {
    return this.s.claim.all(leaseUntil, isoNow(now), destinationId, now, limit);
  }

  /** When the destination's next queued delivery is due (epoch ms), or null when none is queued. */
  nextDueOf(destinationId: number): number | null {
    return this.s.nextDueOf.get(destinationId)!.at;
  }

  /** Deliveries whose lease ran out (their dispatcher died) are queued again. `all`: every one (at start, the only dispatcher). */
  requeueAbandoned(now: number, all: boolean): number {
    return all ? this.s.requeueAllLeased.run(now, isoNow(now)).changes : this.s.requeueLeased.run(isoNow(now), now).changes;
  }

  /**
   * Records an attempt and what it means for its delivery, in one transaction. A delivery deleted while it was sent
   * (its destination or connection deleted) is left gone: nothing is recorded.
   */
  finish(attempt: NewAttempt, outcome: AttemptOutcome): void {
    this.db.transaction(() => {
      if (!this.s.delivery.get(attempt.deliveryId)) return;
      this.s.insertAttempt.run(
        attempt.deliveryId,
        attempt.attempt,
        attempt.method,
        attempt.url,
        JSON.stringify(attempt.headers),
        attempt.responseStatus,
        attempt.responseHeaders === null ? null : JSON.stringify(attempt.responseHeaders),
        attempt.responseBody,
        attempt.responseTruncated ? 1 : 0,
        attempt.error,
        attempt.durationMs,
        isoNow(attempt.at),
      );
      const at = isoNow(attempt.at);
      if (outcome.kind === 'delivered') this.s.delivered.run(outcome.status, at, at, attempt.deliveryId);
      else if (outcome.kind === 'retry') this.s.retry.run(outcome.status, outcome.error, outcome.at, at, attempt.deliveryId);
      else this.s.giveUp.run(outcome.kind, outcome.status, outcome.error, at, attempt.deliveryId);
    })();
  }

  /** A destination answered 2xx: it is healthy again. */
  markHealthy(destinationId: number): void {
    this.s.markHealthy.run(destinationId);
  }

  /** A destination failed an attempt; returns since when it has been failing. */
  markFailing(destinationId: number, now: number): number {
    this.s.markFailing.run(now, destinationId);
    return this.destination(destinationId)?.failing_since ?? now;
  }

  attempts(deliveryId: number): AttemptRow[] {
    return this.s.attempts.all(deliveryId);
  }

  /** One page of deliveries, newest first, and how many match. */
  listDeliveries(filter: DeliveryFilter, page: number, pageSize: number): { rows: DeliveryRow[]; total: number } {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.destinationId !== undefined) (where.push('destination_id = ?'), params.push(filter.destinationId));
    if (filter.status !== undefined) (where.push('status = ?'), params.push(filter.status));
    if (filter.eventType !== undefined) (where.push('event_type = ?'), params.push(filter.eventType));
    if (filter.eventId !== undefined) (where.push('event_id = ?'), params.push(filter.eventId));
    if (filter.from !== undefined) (where.push('created_at >= ?'), params.push(filter.from));
    if (filter.to !== undefined) (where.push('created_at < ?'), params.push(filter.to));
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const rows = this.db.prepare<unknown[], DeliveryRow>(`SELECT * FROM outbound_deliveries ${clause} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`).all(...params, pageSize, (page - 1) * pageSize);
    const total = this.db.prepare<unknown[], { n: number }>(`SELECT count(*) AS n FROM outbound_deliveries ${clause}`).get(...params)!.n;
    return { rows, total };
  }

  /** Queues a finished delivery again, with fresh attempts; false when it is queued or being delivered. */
  replay(id: number, now: number): boolean {
    return this.s.replay.run(now, isoNow(now), id).changes > 0;
  }

  /** Queues again every failed and dead delivery of a destination created in [from, to). Returns how many. */
  replayFailed(destinationId: number, from: string, to: string, now: number): number {
    return this.s.replayFailed.run(now, isoNow(now), destinationId, from, to).changes;
  }

  /** Drops finished deliveries (and their attempts) last touched before `before`. */
  purge(before: number): number {
    return this.s.purge.run(isoNow(before)).changes;
  }
}
