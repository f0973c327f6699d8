import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, ConfigError } from '../src/config.js';

function rejects(env: Record<string, string>, expected: RegExp): void {
  assert.throws(() => loadConfig(env, '/srv/app'), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, expected);
    assert.equal(err.message.includes('\n'), false, 'one line');
    return true;
  });
}

test('with nothing set, the defaults from the design are used', () => {
  const c = loadConfig({}, '/srv/app');
  assert.equal(c.port, 3000);
  assert.equal(c.dataDir, '/srv/app/data');
  assert.equal(c.databaseFile, '/srv/app/data/memberhook.db');
  assert.equal(c.publicUrl, 'http://localhost:3000');
  assert.equal(c.keap.apiUrl, 'https://api.infusionsoft.com/crm');
  assert.equal(c.keap.tokenUrl, 'https://api.infusionsoft.com/token');
  assert.equal(c.keap.authorizeUrl, 'https://accounts.infusionsoft.com/app/oauth/authorize');
  assert.deepEqual(c.keap.rateLimit, { perSecond: 5, perMinute: 240 }, "what Keap enforces for a key: its 5/s spike arrest and 240/min");
  assert.equal(c.defaultRole, 'subscriber');
  assert.equal(c.accessKey, undefined);
  assert.equal(c.admin, undefined);
  assert.equal(c.pluginsDir, '/srv/app/plugins', 'plugins are looked for beside the data folder');
  assert.deepEqual(c.plugins, []);
  assert.equal(c.trustProxy, false, 'no X-Forwarded-For is believed unless the operator says whose');
});

test('TRUST_PROXY takes a hop count or the proxies\' addresses and subnets, never "true"', () => {
  assert.equal(loadConfig({ TRUST_PROXY: '1' }).trustProxy, 1);
  assert.equal(loadConfig({ TRUST_PROXY: '0' }).trustProxy, false);
  assert.equal(loadConfig({ TRUST_PROXY: 'false' }).trustProxy, false);
  assert.deepEqual(loadConfig({ TRUST_PROXY: ' 10.0.0.5, 172.16.0.0/12 ,loopback, fd00::/8 ' }).trustProxy, ['10.0.0.5', '172.16.0.0/12', 'loopback', 'fd00::/8']);
  rejects({ TRUST_PROXY: 'true' }, /^Invalid setting TRUST_PROXY: expected a hop count or the proxies' addresses \(true would let any client set its own address\)/);
  rejects({ TRUST_PROXY: '10.0.0.5, nginx' }, /^Invalid setting TRUST_PROXY: expected a hop count \(up to 100\) or IP addresses, CIDR subnets/);
  rejects({ TRUST_PROXY: '10.0.0.0/33' }, /^Invalid setting TRUST_PROXY/);
});

test('PLUGINS lists npm packages and paths; PLUGINS_DIR moves the plugins folder', () => {
  const c = loadConfig({ PLUGINS: ' memberhook-plugin-a, @acme/memberhook-b ,./local/plugin.js,/opt/p', PLUGINS_DIR: 'extensions' }, '/srv/app');
  assert.deepEqual(c.plugins, ['memberhook-plugin-a', '@acme/memberhook-b', './local/plugin.js', '/opt/p']);
  assert.equal(c.pluginsDir, '/srv/app/extensions');
  rejects({ PLUGINS: 'good,bad name' }, /^Invalid setting PLUGINS: expected npm package names or paths/);
});

test('every documented setting is read', () => {
  const c = loadConfig({
    PORT: '8080', HOST: '127.0.0.1', DATA_DIR: '/var/lib/mh', PUBLIC_URL: 'https://members.example.com/',
    ACCESS_KEY: 'k'.repeat(40), KEAP_API_URL: 'http://127.0.0.1:4010/crm/', KEAP_API_KEY: 'KeapAK-abcdef123',
    KEAP_CLIENT_ID: 'cid', KEAP_CLIENT_SECRET: 'csecret', KEAP_AUTHORIZE_URL: 'http://127.0.0.1:4010/app/oauth/authorize',
    KEAP_PASSWORD_FIELD: 'Password', KEAP_USERNAME_FIELD: '17', DEFAULT_ROLE: 'member',
    SMTP_URL: 'smtp://user:pw@127.0.0.1:2525', MAIL_FROM: 'Site <hi@example.com>',
    ADMIN_EMAIL: 'boss@example.com', ADMIN_PASSWORD: 'correct horse battery', API_TOKEN: 't'.repeat(30),
    KEAP_RATE_PER_SECOND: '5', KEAP_RATE_PER_MINUTE: '100', KEAP_TIMEOUT_MS: '2500', LOG_LEVEL: 'warn',
  }, '/srv/app');
  assert.equal(c.port, 8080);
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.dataDir, '/var/lib/mh');
  assert.equal(c.publicUrl, 'https://members.example.com', 'trailing slash removed');
  assert.equal(c.accessKey, 'k'.repeat(40));
  assert.equal(c.keap.apiUrl, 'http://127.0.0.1:4010/crm');
  assert.equal(c.keap.tokenUrl, 'http://127.0.0.1:4010/token', 'token URL follows the API host');
  assert.deepEqual(c.keap.oauth, { clientId: 'cid', clientSecret: 'csecret' });
  assert.equal(c.keap.passwordField, 'Password');
  assert.equal(c.keap.usernameField, '17');
  assert.deepEqual(c.keap.rateLimit, { perSecond: 5, perMinute: 100 });
  assert.equal(c.keap.timeoutMs, 2500);
  assert.equal(c.defaultRole, 'member');
  assert.equal(c.mail.smtpUrl, 'smtp://user:pw@127.0.0.1:2525');
  assert.equal(c.mail.from, 'Site <hi@example.com>');
  assert.deepEqual(c.admin, { email: 'boss@example.com', password: 'correct horse battery' });
  assert.equal(c.apiToken, 't'.repeat(30));
  assert.equal(c.logLevel, 'warn');
});

test('an empty variable counts as unset', () => {
  assert.equal(loadConfig({ PORT: '', ACCESS_KEY: '' }).port, 3000);
});

test('a bad value stops the start with one line naming the variable and what was expected', () => {
  rejects({ PORT: 'abc' }, /^Invalid setting PORT: expected a port number \(got "abc"\)$/);
  rejects({ PORT: '70000' }, /^Invalid setting PORT: expected 0 to 65535/);
  rejects({ KEAP_API_URL: 'ftp://keap' }, /^Invalid setting KEAP_API_URL: expected an http\(s\) URL/);
  rejects({ PUBLIC_URL: 'members.example.com' }, /^Invalid setting PUBLIC_URL: expected an http\(s\) URL/);
  rejects({ DEFAULT_ROLE: 'Gold Members' }, /^Invalid setting DEFAULT_ROLE: expected a role slug/);
  rejects({ SMTP_URL: 'http://mail' }, /^Invalid setting SMTP_URL: expected an smtp:\/\/ or smtps:\/\/ URL$/);
  rejects({ ADMIN_EMAIL: 'not-an-email', ADMIN_PASSWORD: 'long enough pw' }, /^Invalid setting ADMIN_EMAIL: expected an email address/);
  rejects({ ADMIN_EMAIL: 'a@example.com' }, /^Invalid setting ADMIN_PASSWORD: expected ADMIN_EMAIL and ADMIN_PASSWORD to be set together$/);
  rejects({ KEAP_CLIENT_ID: 'x' }, /^Invalid setting KEAP_CLIENT_SECRET: expected KEAP_CLIENT_ID and KEAP_CLIENT_SECRET/);
  rejects({ KEAP_RATE_PER_SECOND: '0' }, /^Invalid setting KEAP_RATE_PER_SECOND: expected a positive whole number/);
  rejects({ KEAP_RATE_PER_SECOND: '50', KEAP_RATE_PER_MINUTE: '40' }, /^Invalid setting KEAP_RATE_PER_SECOND: expected no more than KEAP_RATE_PER_MINUTE \(got "50"\)$/);
  rejects({ LOG_LEVEL: 'loud' }, /^Invalid setting LOG_LEVEL: expected one of/);
});

test('a bad secret is named but its value is never echoed', () => {
  for (const [name, value] of [['ACCESS_KEY', 'short-secret-value'], ['API_TOKEN', 'tiny-token'], ['ADMIN_PASSWORD', 'pw123']] as const) {
    const env: Record<string, string> = { [name]: value };
    if (name === 'ADMIN_PASSWORD') env.ADMIN_EMAIL = 'a@example.com';
    assert.throws(() => loadConfig(env), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, new RegExp(`^Invalid setting ${name}: expected at least`));
      assert.equal(err.message.includes(value), false, `${name} value leaked`);
      return true;
    });
  }
  assert.throws(() => loadConfig({ SMTP_URL: 'http://user:hunter2@mail' }), (err: Error) => !err.message.includes('hunter2'));
});
