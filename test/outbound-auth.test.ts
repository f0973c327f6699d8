import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { openDatabase } from '../src/core/db.js';
import { SettingsStore } from '../src/core/settings.js';
import { connectionAuthSchema, OutboundAuth, TokenEndpointError, type ConnectionAuth } from '../src/features/outbound-webhooks/auth.js';
import { sendOnce } from '../src/features/outbound-webhooks/sender.js';
import type { ConnectionRow, DestinationRow } from '../src/features/outbound-webhooks/store.js';
import { ManualClock } from './support/clock.js';
import { startOAuthServer, type TestOAuthServer } from './support/oauth-server.js';

const CLIENT_ID = 'client-1';
const CLIENT_SECRET = 'secret:with&odd=chars';
const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl';

let oauth: TestOAuthServer;
let clock: ManualClock;
let auth: OutboundAuth;

before(async () => {
  oauth = await startOAuthServer({ assertions: [JWT], scopes: ['members:write', 'events'] });
});
after(() => oauth.close());
beforeEach(() => {
  oauth.calls.length = 0;
  oauth.options.expiresIn = 3600;
  clock = new ManualClock(Date.parse('2026-12-08T00:00:00Z'));
  auth = new OutboundAuth({ clock, allowPrivate: () => true });
});

const grants = {
  client_credentials: (): ConnectionAuth => ({ type: 'oauth2', grant: 'client_credentials', tokenUrl: oauth.tokenUrl, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, scope: 'members:write events' }),
  password: (): ConnectionAuth => ({ type: 'oauth2', grant: 'password', tokenUrl: oauth.tokenUrl, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, username: 'ada', password: 'lovelace-1815' }),
  jwt_bearer: (): ConnectionAuth => ({ type: 'oauth2', grant: 'jwt_bearer', tokenUrl: oauth.tokenUrl, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, assertion: JWT, scope: 'events' }),
};

/**
 * A delivery through the dispatcher's own sender (sendOnce): the auth headers, to the resource, once more with a
 * fresh token after a 401. The connection and destination rows carry only what sending reads.
 */
async function deliver(key: string, connection: ConnectionAuth): Promise<number> {
  const id = Number(key.replace(/\D/g, '')) || 1;
  const result = await sendOnce(
    { auth, allowPrivate: () => true, userAgent: 'memberhook-test' },
    {
      connection: { id, base_url: oauth.resourceUrl, port: null } as ConnectionRow,
      secrets: { auth: connection, signing: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'] },
      destination: { path: '', method: 'POST', content_type: 'application/json' } as DestinationRow,
    },
    { eventId: 'msg_1', body: '{}', at: clock.now() },
  );
  assert.equal(result.error, null, result.error?.message);
  return result.response!.status;
}

async function tokenFailure(promise: Promise<unknown>): Promise<TokenEndpointError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof TokenEndpointError, `expected a TokenEndpointError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the token request to fail');
}

describe('static credentials', () => {
  test('none adds no header', async () => {
    assert.deepEqual(await auth.headers('c1', { type: 'none' }), {});
  });
  test('basic sends the user name and password as HTTP Basic', async () => {
    const headers = await auth.headers('c1', { type: 'basic', username: 'hook', password: 'pässword' });
    assert.equal(headers.authorization, `Basic ${Buffer.from('hook:pässword').toString('base64')}`);
  });
  test('bearer sends the token', async () => {
    assert.deepEqual(await auth.headers('c1', { type: 'bearer', token: 'tok_123' }), { authorization: 'Bearer tok_123' });
  });
});

describe('OAuth 2.0 grants', () => {
  test('client credentials: client authenticated with HTTP Basic, scope sent, token used', async () => {
    assert.equal(await deliver('c1', grants.client_credentials()), 200);
    assert.equal(oauth.calls.length, 1);
    const call = oauth.calls[0]!;
    assert.equal(call.grantType, 'client_credentials');
    assert.equal(call.clientAuth, 'basic');
    assert.equal(call.clientId, CLIENT_ID);
    assert.equal(call.scope, 'members:write events');
    assert.equal(call.status, 200);
    assert.match(call.contentType ?? '', /^application\/x-www-form-urlencoded/);
  });

  test('resource owner password: the user name and password reach the endpoint', async () => {
    assert.equal(await deliver('c1', grants.password()), 200);
    assert.equal(oauth.calls[0]!.grantType, 'password');
    assert.equal(oauth.calls[0]!.status, 200);
    assert.equal(oauth.calls[0]!.scope, undefined);
  });

  test('JWT bearer (RFC 7523): the assertion is the grant', async () => {
    assert.equal(await deliver('c1', grants.jwt_bearer()), 200);
    assert.equal(oauth.calls[0]!.grantType, 'urn:ietf:params:oauth:grant-type:jwt-bearer');
    assert.equal(oauth.calls[0]!.status, 200);
    assert.equal(oauth.calls[0]!.scope, 'events');
  });

  test('a wrong resource owner password is the endpoint\'s invalid_grant, shown for the page', async () => {
    const err = await tokenFailure(auth.headers('c1', { ...grants.password(), password: 'wrong-password' } as ConnectionAuth));
    assert.equal(err.message, 'The token endpoint answered 400: invalid_grant (The resource owner credentials are not valid)');
    assert.equal(err.retryable, false);
    assert.equal(auth.tokenError('c1')?.message, err.message);
    assert.equal(auth.tokenError('c1')?.at, '2026-12-08T00:00:00.000Z');
    assert.doesNotMatch(err.message, /wrong-password/);
  });

  test('an unknown assertion is refused by the endpoint', async () => {
    const err = await tokenFailure(auth.headers('c1', { ...grants.jwt_bearer(), assertion: 'a.b.c' } as ConnectionAuth));
    assert.match(err.message, /400: invalid_grant \(The assertion is not valid\)/);
  });

  test('a wrong client secret is a 401 invalid_client, never echoing the secret', async () => {
    const err = await tokenFailure(auth.headers('c1', { ...grants.client_credentials(), clientSecret: 'not-the-secret' } as ConnectionAuth));
    assert.equal(err.status, 401);
    assert.match(err.message, /401: invalid_client \(Client authentication failed\)/);
    assert.doesNotMatch(err.message, /not-the-secret/);
  });

  test('a scope the endpoint does not know is invalid_scope', async () => {
    const err = await tokenFailure(auth.headers('c1', { ...grants.client_credentials(), scope: 'admin' } as ConnectionAuth));
    assert.match(err.message, /400: invalid_scope/);
  });
});

describe('the token cache', () => {
  test('one token serves many deliveries until shortly before it expires', async () => {
    for (let i = 0; i < 5; i++) assert.equal(await deliver('c1', grants.client_credentials()), 200);
    assert.equal(oauth.calls.length, 1);
    clock.advance(3600_000 - 61_000);
    await deliver('c1', grants.client_credentials());
    assert.equal(oauth.calls.length, 1, 'still more than a minute left');
    clock.advance(2_000);
    await deliver('c1', grants.client_credentials());
    assert.equal(oauth.calls.length, 2, 'fetched again within the last minute');
  });

  test('a short-lived token is renewed at half its life', async () => {
    oauth.options.expiresIn = 60;
    await auth.headers('c1', grants.client_credentials());
    clock.advance(29_000);
    await auth.headers('c1', grants.client_credentials());
    assert.equal(oauth.calls.length, 1);
    clock.advance(2_000);
    await auth.headers('c1', grants.client_credentials());
    assert.equal(oauth.calls.length, 2);
  });

  test('deliveries asking together share one token request', async () => {
    const all = await Promise.all(Array.from({ length: 10 }, () => auth.headers('c1', grants.client_credentials())));
    assert.equal(oauth.calls.length, 1);
    assert.equal(new Set(all.map((headers) => headers.authorization)).size, 1);
  });

  test('connections have their own tokens', async () => {
    const a = await auth.headers('c1', grants.client_credentials());
    const b = await auth.headers('c2', grants.client_credentials());
    assert.notEqual(a.authorization, b.authorization);
    assert.equal(oauth.calls.length, 2);
  });

  test('a changed auth configuration fetches a new token', async () => {
    const first = await auth.headers('c1', grants.client_credentials());
    const second = await auth.headers('c1', { ...grants.client_credentials(), scope: 'events' } as ConnectionAuth);
    assert.notEqual(first.authorization, second.authorization);
    assert.equal(oauth.calls.length, 2);
    assert.equal(oauth.calls[1]!.scope, 'events');
  });

  test('a 401 from the receiver: forget, fetch a fresh token, and the retry goes through', async () => {
    assert.equal(await deliver('c1', grants.client_credentials()), 200);
    oauth.revokeAll();
    assert.equal(await deliver('c1', grants.client_credentials()), 200);
    assert.equal(oauth.calls.length, 2);
  });

  test('a token without expires_in is kept until a 401', async () => {
    oauth.options.expiresIn = null;
    await deliver('c1', grants.password());
    clock.advance(30 * 60_000);
    await deliver('c1', grants.password());
    assert.equal(oauth.calls.length, 1);
    oauth.revokeAll();
    assert.equal(await deliver('c1', grants.password()), 200);
    assert.equal(oauth.calls.length, 2);
  });
});

describe('a failing token endpoint', () => {
  test('a 5xx is retryable and kept for the page until a token is fetched', async () => {
    oauth.failNext(1, 503, { error: 'temporarily_unavailable', error_description: 'maintenance' });
    const err = await tokenFailure(auth.headers('c1', grants.client_credentials()));
    assert.equal(err.retryable, true);
    assert.equal(err.message, 'The token endpoint answered 503: temporarily_unavailable (maintenance)');
    assert.equal(auth.tokenError('c1')?.message, err.message);
    assert.equal(auth.tokenError('c2'), undefined);
    await auth.headers('c1', grants.client_credentials());
    assert.equal(auth.tokenError('c1'), undefined);
  });

  test('an answer without a token, or not JSON, says so', async () => {
    oauth.failNext(1, 200, { token_type: 'Bearer' });
    assert.match((await tokenFailure(auth.headers('c1', grants.client_credentials()))).message, /answered 200 without an access_token/);
    oauth.failNext(1, 502, 'Bad gateway');
    assert.equal((await tokenFailure(auth.headers('c1', grants.client_credentials()))).message, 'The token endpoint answered 502');
  });

  test('a token type other than bearer is refused', async () => {
    oauth.failNext(1, 200, { access_token: 'x', token_type: 'mac' });
    assert.match((await tokenFailure(auth.headers('c1', grants.client_credentials()))).message, /type "mac"; only bearer tokens/);
  });

  test('an endpoint echoing a secret in its description has it redacted', async () => {
    oauth.failNext(1, 400, { error: 'invalid_request', error_description: `bad secret ${CLIENT_SECRET}` });
    const err = await tokenFailure(auth.headers('c1', grants.client_credentials()));
    assert.equal(err.message, 'The token endpoint answered 400: invalid_request (bad secret [redacted])');
  });

  test('an unreachable endpoint names the host', async () => {
    const err = await tokenFailure(auth.headers('c1', { ...grants.client_credentials(), tokenUrl: 'http://no-such-host.invalid/token' } as ConnectionAuth));
    assert.match(err.message, /could not be reached: no-such-host\.invalid/);
    assert.equal(err.retryable, true);
  });

  test('a token endpoint on a private address is refused without OUTBOUND_ALLOW_PRIVATE', async () => {
    const guarded = new OutboundAuth({ clock, allowPrivate: () => false });
    const err = await tokenFailure(guarded.headers('c1', grants.client_credentials()));
    assert.match(err.message, /private, loopback/);
    assert.equal(err.retryable, false);
    assert.equal(oauth.calls.length, 0);
  });

  test('forget clears the kept error', async () => {
    oauth.failNext(1, 500, {});
    await tokenFailure(auth.headers('c1', grants.client_credentials()));
    assert.ok(auth.tokenError('c1'));
    auth.forget('c1');
    assert.equal(auth.tokenError('c1'), undefined);
  });
});

describe('a token error seen from another thread', () => {
  test('the failure kept in the settings table shows wherever the page asks, and goes with the next token', async () => {
    // Two OutboundAuth on one database: the job thread's, which delivers, and the request thread's, which shows the page.
    const { db } = openDatabase({ filename: ':memory:' });
    const board = new SettingsStore(db);
    const delivering = new OutboundAuth({ clock, allowPrivate: () => true, errorBoard: board });
    const showing = new OutboundAuth({ clock, allowPrivate: () => true, errorBoard: board });
    oauth.failNext(1, 400, { error: 'invalid_grant', error_description: 'expired assertion' });
    await tokenFailure(delivering.headers('connection:7', grants.jwt_bearer()));
    assert.deepEqual(showing.tokenError('connection:7'), { message: 'The token endpoint answered 400: invalid_grant (expired assertion)', at: '2026-12-08T00:00:00.000Z' });
    assert.equal(showing.tokenError('connection:8'), undefined);
    await delivering.headers('connection:7', grants.jwt_bearer());
    assert.equal(showing.tokenError('connection:7'), undefined);
    assert.equal(board.get('outbound.token_error.connection:7'), '');

    oauth.failNext(1, 500, {});
    await tokenFailure(delivering.headers('connection:7', { ...grants.jwt_bearer(), scope: 'members:write' } as ConnectionAuth));
    assert.ok(showing.tokenError('connection:7'));
    showing.forget('connection:7');
    assert.equal(delivering.tokenError('connection:7'), undefined, 'a change to the connection (forget) clears it for every thread');
    db.close();
  });
});

describe('connectionAuthSchema', () => {
  test('accepts each type and drops what the grant does not use', () => {
    assert.deepEqual(connectionAuthSchema.parse({ type: 'none' }), { type: 'none' });
    assert.deepEqual(connectionAuthSchema.parse({ type: 'bearer', token: ' t ' }), { type: 'bearer', token: 't' });
    assert.deepEqual(
      connectionAuthSchema.parse({ type: 'oauth2', grant: 'client_credentials', tokenUrl: 'https://auth.example.com/token', clientId: 'a', clientSecret: 'b', scope: '', username: 'ignored' }),
      { type: 'oauth2', grant: 'client_credentials', tokenUrl: 'https://auth.example.com/token', clientId: 'a', clientSecret: 'b' },
    );
  });

  const refused: Array<[string, unknown, RegExp]> = [
    ['an unknown type', { type: 'digest' }, /expected an authentication type/],
    ['basic without a password', { type: 'basic', username: 'u' }, /expected a password/],
    ['a basic user name with a colon', { type: 'basic', username: 'a:b', password: 'p' }, /without ":"/],
    ['a header value with a newline', { type: 'bearer', token: 'a\r\nX-Evil: 1' }, /one line/],
    ['the password grant without a user name', { type: 'oauth2', grant: 'password', tokenUrl: 'https://a.example/t', clientId: 'a', clientSecret: 'b', password: 'p' }, /user name \(the password grant needs one\)/],
    ['the JWT grant without a token', { type: 'oauth2', grant: 'jwt_bearer', tokenUrl: 'https://a.example/t', clientId: 'a', clientSecret: 'b' }, /JSON Web Token \(the JWT bearer grant/],
    ['the JWT grant with something else', { type: 'oauth2', grant: 'jwt_bearer', tokenUrl: 'https://a.example/t', clientId: 'a', clientSecret: 'b', assertion: 'not a jwt' }, /three base64url parts/],
    ['a token URL that is not http(s)', { type: 'oauth2', grant: 'client_credentials', tokenUrl: 'ftp://a.example/t', clientId: 'a', clientSecret: 'b' }, /http\(s\) URL/],
    ['an unknown grant', { type: 'oauth2', grant: 'implicit', tokenUrl: 'https://a.example/t', clientId: 'a', clientSecret: 'b' }, /client_credentials, password or jwt_bearer/],
  ];
  for (const [what, input, message] of refused) {
    test(`refuses ${what}`, () => {
      const result = connectionAuthSchema.safeParse(input);
      assert.equal(result.success, false);
      assert.match(result.error!.issues.map((issue) => issue.message).join('; '), message);
    });
  }
});
