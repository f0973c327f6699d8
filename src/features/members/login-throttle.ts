import { addressKey } from '../../core/client-address.js';
import type { Clock } from '../../core/clock.js';
import type { Db } from '../../core/db.js';

/** How many failures a key may have in a window, and how long it is locked once it has had them. */
export interface ThrottleRule {
  maxFailures: number;
  windowMs: number;
  /** The first lock; each failure after that doubles it, up to `maxLockMs`. */
  firstLockMs: number;
  maxLockMs: number;
}

const MINUTE = 60_000;

/** One account: 5 wrong passwords in 15 minutes lock it for 1 minute, then 2, 4, ... up to an hour. */
export const ACCOUNT_RULE: ThrottleRule = { maxFailures: 5, windowMs: 15 * MINUTE, firstLockMs: MINUTE, maxLockMs: 60 * MINUTE };
/** One client address across every account: 20 wrong passwords in 15 minutes, then the same growing locks. */
export const IP_RULE: ThrottleRule = { maxFailures: 20, windowMs: 15 * MINUTE, firstLockMs: MINUTE, maxLockMs: 60 * MINUTE };

/** Who is trying: the client address, and the login as typed (email or username), when there is one. */
export interface LoginAttempt {
  ip: string;
  login?: string;
  /**
   * The account's other logins, when it is known (its email and username): checked, counted and cleared together
   * with `login`, so guesses cannot be spread over the ways of typing one account.
   */
  aliases?: readonly string[];
}

/** Which of an attempt's counters is locked: the client address's, the account's, or both. */
export type ThrottleKeyKind = 'ip' | 'account';

export type ThrottleVerdict = { allowed: true } | { allowed: false; retryAfterMs: number; lockedBy: ThrottleKeyKind[] };

export interface ThrottleOptions {
  /**
   * Keeps this throttle's counters apart from the login forms' (`<scope>:ip:...`): a form that is limited for
   * another reason (the "forgot password" form, against email floods) must not lock anyone's login.
   */
  scope?: string;
}

interface FailureRow {
  failures: number;
  window_start: number;
  locked_until: number;
}

/**
 * Brute-force limits for every form that checks a password (member login, admin login, password change), kept in
 * SQLite so they survive restarts. Keys are `ip:<address>` and `account:<lowercased login>` (with a scope prefix
 * for a throttle that counts something else, like reset emails asked for).
 *
 * `admit` checks the locks and counts the attempt as a failure in the same transaction, before the (slow)
 * password check runs: a burst of parallel guesses is counted as it arrives, not after bcrypt answers, so it
 * cannot slip hundreds of tries in before the lock lands. `succeeded` then takes the attempt back: the account's
 * counter is cleared, the address's loses the one failure that was not one.
 */
export class LoginThrottle {
  private readonly getStmt;
  private readonly putStmt;
  private readonly deleteStmt;
  private readonly rules: { account: ThrottleRule; ip: ThrottleRule };
  private readonly prefix: string;

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    rules: Partial<{ account: ThrottleRule; ip: ThrottleRule }> = {},
    options: ThrottleOptions = {},
  ) {
    this.rules = { account: rules.account ?? ACCOUNT_RULE, ip: rules.ip ?? IP_RULE };
    this.prefix = options.scope ? `${options.scope}:` : '';
    this.getStmt = db.prepare<[string], FailureRow>('SELECT failures, window_start, locked_until FROM login_failures WHERE key = ?');
    this.putStmt = db.prepare(
      `INSERT INTO login_failures (key, failures, window_start, locked_until) VALUES (@key, @failures, @windowStart, @lockedUntil)
       ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, window_start = excluded.window_start, locked_until = excluded.locked_until`,
    );
    this.deleteStmt = db.prepare('DELETE FROM login_failures WHERE key = ?');
  }

  static ipKey(ip: string): string {
    return `ip:${addressKey(ip)}`;
  }

  static accountKey(login: string): string {
    return `account:${login.trim().toLowerCase()}`;
  }

  /** Whether an attempt would be let through now; changes nothing. */
  check(attempt: LoginAttempt): ThrottleVerdict {
    const now = this.clock.now();
    let lockedUntil = 0;
    const lockedBy: ThrottleKeyKind[] = [];
    for (const [key, , kind] of this.keys(attempt)) {
      const row = this.getStmt.get(key);
      if (row && row.locked_until > now) {
        lockedUntil = Math.max(lockedUntil, row.locked_until);
        lockedBy.push(kind);
      }
    }
    return lockedUntil > now ? { allowed: false, retryAfterMs: lockedUntil - now, lockedBy } : { allowed: true };
  }

  /**
   * Refuses a locked attempt (nothing is counted: it costs the attacker a round trip and tells nothing); otherwise
   * counts it as a failure and lets it through. Call `succeeded` if the password turns out right.
   */
  admit(attempt: LoginAttempt): ThrottleVerdict {
    return this.db.transaction((): ThrottleVerdict => {
      const verdict = this.check(attempt);
      if (!verdict.allowed) return verdict;
      const now = this.clock.now();
      for (const [key, rule] of this.keys(attempt)) this.countFailure(key, rule, now);
      return verdict;
    }).immediate();
  }

  /** The admitted attempt was right: the account starts afresh, and the address's counter forgets this attempt. */
  succeeded(attempt: LoginAttempt): void {
    this.db.transaction(() => {
      for (const [accountKey, , kind] of this.keys(attempt)) if (kind === 'account') this.deleteStmt.run(accountKey);
      const key = this.prefix + LoginThrottle.ipKey(attempt.ip);
      const row = this.getStmt.get(key);
      if (!row) return;
      const failures = Math.max(0, row.failures - 1);
      // A lock this attempt's provisional count set is lifted; one earned by real failures stays.
      const lockedUntil = failures < this.rules.ip.maxFailures ? 0 : row.locked_until;
      this.putStmt.run({ key, failures, windowStart: row.window_start, lockedUntil });
    }).immediate();
  }

  /** Forgets every counter for these keys (an admin unlocking an account). */
  reset(attempt: LoginAttempt): void {
    for (const [key] of this.keys(attempt)) this.deleteStmt.run(key);
  }

  /**
   * Forgets one account's counter and lock, leaving the addresses' alone: its owner has just proved who they are
   * another way (a password reset link), and a stranger's guesses must not keep them out of the new password.
   */
  forgetAccount(logins: readonly string[]): void {
    for (const login of logins) this.deleteStmt.run(this.prefix + LoginThrottle.accountKey(login));
  }

  private keys(attempt: LoginAttempt): Array<[string, ThrottleRule, ThrottleKeyKind]> {
    const keys: Array<[string, ThrottleRule, ThrottleKeyKind]> = [[this.prefix + LoginThrottle.ipKey(attempt.ip), this.rules.ip, 'ip']];
    const logins = new Set([attempt.login, ...(attempt.aliases ?? [])].filter((l) => l !== undefined).map((l) => this.prefix + LoginThrottle.accountKey(l)));
    for (const key of logins) keys.push([key, this.rules.account, 'account']);
    return keys;
  }

  private countFailure(key: string, rule: ThrottleRule, now: number): void {
    const row = this.getStmt.get(key);
    // A counter starts afresh once a whole window has passed since it started and since its last lock ended, so
    // an attacker who keeps going keeps doubling the wait, while a member who mistyped a few times is forgotten.
    const fresh = !row || now - Math.max(row.window_start, row.locked_until) >= rule.windowMs;
    const failures = fresh ? 1 : row.failures + 1;
    const windowStart = fresh ? now : row.window_start;
    let lockedUntil = fresh ? 0 : row.locked_until;
    if (failures >= rule.maxFailures) {
      const doublings = Math.min(failures - rule.maxFailures, 30);
      lockedUntil = Math.max(lockedUntil, now + Math.min(rule.firstLockMs * 2 ** doublings, rule.maxLockMs));
    }
    this.putStmt.run({ key, failures, windowStart, lockedUntil });
  }
}
