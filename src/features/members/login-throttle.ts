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

const SECOND = 1_000;
const MINUTE = 60_000;

/** One account from one address: 5 wrong passwords in 15 minutes lock that pair for 1 minute, then 2, 4, ... up to an hour. */
export const ACCOUNT_ADDRESS_RULE: ThrottleRule = { maxFailures: 5, windowMs: 15 * MINUTE, firstLockMs: MINUTE, maxLockMs: 60 * MINUTE };
/**
 * One account from every address that is not a known device: 10 wrong passwords in 15 minutes, then a cool-off of
 * 5 seconds that doubles with each further failure up to a minute. It slows guessing spread over many addresses to
 * about one a minute without locking the owner out for long; a browser they logged in with before skips it.
 */
export const ACCOUNT_RULE: ThrottleRule = { maxFailures: 10, windowMs: 15 * MINUTE, firstLockMs: 5 * SECOND, maxLockMs: MINUTE };
/** One known device (a browser that logged in to the account before): its own 5 failures, then the growing lock. */
export const DEVICE_RULE: ThrottleRule = { maxFailures: 5, windowMs: 15 * MINUTE, firstLockMs: MINUTE, maxLockMs: 60 * MINUTE };
/** One client address across every account: 20 wrong passwords in 15 minutes, then the growing lock. */
export const IP_RULE: ThrottleRule = { maxFailures: 20, windowMs: 15 * MINUTE, firstLockMs: MINUTE, maxLockMs: 60 * MINUTE };

export interface ThrottleRules {
  ip: ThrottleRule;
  /** Counted per account, whatever the address (when the attempt names an account). */
  account: ThrottleRule;
  /** Counted per account and address together; none: not counted. */
  accountAddress?: ThrottleRule;
  /** Counted per known device instead of everything else; none: devices are not told apart. */
  device?: ThrottleRule;
}

/** The login forms' rules: per address, per account and address, a per-account slow-down, per known device. */
export const LOGIN_RULES: ThrottleRules = { ip: IP_RULE, account: ACCOUNT_RULE, accountAddress: ACCOUNT_ADDRESS_RULE, device: DEVICE_RULE };

/** Who is trying: the client address, the account (`LoginThrottle.account`), and the browser if it is known. */
export interface LoginAttempt {
  ip: string;
  account?: string;
  /**
   * The id of a device cookie proving this browser logged in to `account` before. Such an attempt is counted
   * against that device alone: strangers' failures (from any address, its own included) do not hold it back.
   */
  device?: string;
}

/** Which of an attempt's counters is locked. */
export type ThrottleKeyKind = 'ip' | 'account' | 'account-address' | 'device';

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

type ThrottleKey = [key: string, rule: ThrottleRule, kind: ThrottleKeyKind];

/**
 * Brute-force limits for every form that checks a password (member login, admin login, password change), kept in
 * SQLite so they survive restarts. A stranger who knows an administrator's email must not be able to keep them
 * out (OWASP's "device cookies"), so for the login forms:
 * - an address is locked after 20 failures across every account, and an account *from one address* after 5: the
 *   locks grow to an hour;
 * - an account is never locked by failures from everywhere, only slowed (a cool-off of seconds up to a minute);
 * - a browser that logged in to the account before (its device cookie) skips all of that and has a budget of
 *   its own, so the owner gets in while strangers hammer the account, from any address.
 * Addresses are counted by `addressKey` (an IPv6 client by its /64).
 *
 * `admit` checks the locks and counts the attempt as a failure in the same transaction, before the (slow)
 * password check runs: a burst of parallel guesses is counted as it arrives, not after bcrypt answers, so it
 * cannot slip hundreds of tries in before the lock lands. `succeeded` then takes the attempt back.
 */
export class LoginThrottle {
  private readonly getStmt;
  private readonly putStmt;
  private readonly deleteStmt;
  private readonly deleteLikeStmt;
  private readonly rules: ThrottleRules;
  private readonly prefix: string;

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    rules: ThrottleRules = LOGIN_RULES,
    options: ThrottleOptions = {},
  ) {
    this.rules = rules;
    this.prefix = options.scope ? `${options.scope}:` : '';
    this.getStmt = db.prepare<[string], FailureRow>('SELECT failures, window_start, locked_until FROM login_failures WHERE key = ?');
    this.putStmt = db.prepare(
      `INSERT INTO login_failures (key, failures, window_start, locked_until) VALUES (@key, @failures, @windowStart, @lockedUntil)
       ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, window_start = excluded.window_start, locked_until = excluded.locked_until`,
    );
    this.deleteStmt = db.prepare('DELETE FROM login_failures WHERE key = ?');
    this.deleteLikeStmt = db.prepare("DELETE FROM login_failures WHERE key LIKE ? ESCAPE '\\'");
  }

  /**
   * The account an attempt is counted under: the member's id when the login names one (so its email and username
   * share one counter), else the login as typed.
   */
  static account(member: { id: number } | undefined, typed: string): string {
    return member ? `member:${member.id}` : `login:${typed.trim().toLowerCase()}`;
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

  /**
   * The admitted attempt was right. This browser's and this address's own failures at the account are forgotten;
   * the account-wide and address-wide counters only lose this one attempt (the others there may be a stranger's).
   */
  succeeded(attempt: LoginAttempt): void {
    this.db.transaction(() => {
      for (const [key, rule, kind] of this.keys(attempt)) {
        if (kind === 'account-address' || kind === 'device') this.deleteStmt.run(key);
        else this.takeBack(key, rule);
      }
    }).immediate();
  }

  /**
   * Forgets one account's counters and locks (from every address), leaving the addresses' alone: its owner has
   * just proved who they are another way (a password reset link).
   */
  forgetAccount(account: string): void {
    this.db.transaction(() => {
      this.deleteStmt.run(this.accountKey(account));
      this.deleteLikeStmt.run(`${escapeLike(this.accountKey(account))}@%`);
    }).immediate();
  }

  private accountKey(account: string): string {
    return `${this.prefix}account:${account}`;
  }

  private keys(attempt: LoginAttempt): ThrottleKey[] {
    const { account, device } = attempt;
    if (device !== undefined && account !== undefined && this.rules.device) return [[`${this.prefix}device:${device}`, this.rules.device, 'device']];
    const address = addressKey(attempt.ip);
    const keys: ThrottleKey[] = [[`${this.prefix}ip:${address}`, this.rules.ip, 'ip']];
    if (account === undefined) return keys;
    keys.push([this.accountKey(account), this.rules.account, 'account']);
    if (this.rules.accountAddress) keys.push([`${this.accountKey(account)}@${address}`, this.rules.accountAddress, 'account-address']);
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

  /** Takes one provisional failure back; a lock that failure set is lifted, one earned by real failures stays. */
  private takeBack(key: string, rule: ThrottleRule): void {
    const row = this.getStmt.get(key);
    if (!row) return;
    const failures = Math.max(0, row.failures - 1);
    const lockedUntil = failures < rule.maxFailures ? 0 : row.locked_until;
    this.putStmt.run({ key, failures, windowStart: row.window_start, lockedUntil });
  }
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}
