import type { SecretBox } from '../../core/secret-box.js';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';
import { pageCookie, readPageCookie } from '../../core/cookies.js';
import { clientIp } from '../../core/forms.js';
import { signingKey } from '../../core/signing-key.js';
import type { Clock } from '../../core/clock.js';
import type { Config } from '../../config.js';
import type { SettingsStore } from '../../core/settings.js';
import { LoginThrottle, type LoginAttempt } from './login-throttle.js';
import type { Member } from './types.js';

/** The device cookie (`__Host-mh_device` on an HTTPS site). */
export const DEVICE_COOKIE = 'mh_device';
/** How long a browser stays known after its last successful login. */
export const DEVICE_TTL_MS = 180 * 24 * 60 * 60 * 1000;

const COOKIE_PATTERN = /^([1-9]\d{0,15})\.([0-9a-z]{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;

/**
 * Device cookies, after OWASP's proposal: a browser that logged in to an account successfully gets a cookie naming
 * the account, signed with the server's key (`<member id>.<issued>.<random id>.<HMAC>`), unguessable and unforgeable.
 * It grants nothing by itself; it only lets the login throttle count that browser's failures on a budget of its
 * own, apart from strangers guessing at the account. One cookie per browser, for the account last logged in.
 */
export class LoginDevices {
  constructor(
    private readonly ctx: { settings: SettingsStore; secretBox: SecretBox; clock: Clock; config: Pick<Config, 'publicUrl'> },
  ) {}

  /** The device id of the request's cookie if it was issued to `member` and is still good; else undefined. */
  knownDevice(req: Request, member: Member | undefined): string | undefined {
    if (!member) return undefined;
    const value = readPageCookie(this.ctx.config.publicUrl, req, DEVICE_COOKIE);
    const match = value ? COOKIE_PATTERN.exec(value) : null;
    if (!match) return undefined;
    const [, memberId, issued, deviceId, mac] = match;
    if (Number(memberId) !== member.id) return undefined;
    const issuedAt = parseInt(issued!, 36);
    if (!(issuedAt + DEVICE_TTL_MS > this.ctx.clock.now())) return undefined;
    const expected = Buffer.from(this.sign(`${memberId}.${issued}.${deviceId}`));
    const sent = Buffer.from(mac!);
    return expected.length === sent.length && timingSafeEqual(expected, sent) ? deviceId : undefined;
  }

  /** Marks this browser as one that logged in to `member` (a fresh cookie each time, so it stays good while used). */
  remember(req: Request, res: Response, member: Member): void {
    const body = `${member.id}.${this.ctx.clock.now().toString(36)}.${randomBytes(16).toString('base64url')}`;
    const cookie = pageCookie(this.ctx.config.publicUrl, req, DEVICE_COOKIE);
    res.cookie(cookie.name, `${body}.${this.sign(body)}`, { ...cookie.options, maxAge: DEVICE_TTL_MS });
  }

  private key: Buffer | undefined;

  private sign(body: string): string {
    // Read on first use, not at start: the settings table is ready by then in every thread that logs anyone in.
    this.key ??= signingKey(this.ctx, 'login-device');
    return createHmac('sha256', this.key).update(body).digest('base64url');
  }
}

/**
 * A password attempt at a login form (or the password change page) as the throttle counts it: the client's
 * address, the account the typed login names (a member's email and username are one account), and this
 * browser's device cookie if it was issued for that account.
 */
export function loginAttempt(ctx: { devices: LoginDevices }, req: Request, member: Member | undefined, typed: string): LoginAttempt {
  const device = ctx.devices.knownDevice(req, member);
  const attempt: LoginAttempt = { ip: clientIp(req), account: LoginThrottle.account(member, typed) };
  if (device !== undefined) attempt.device = device;
  return attempt;
}
