import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../src/config.js';
import { isBlockedAddress, OutboundError, safeRequest, type OutboundErrorCode } from '../src/core/safe-http.js';

const ALLOW = { allowPrivate: true };
const GUARD = { allowPrivate: false };

interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A receiver on loopback whose answer each test sets by path. */
let server: Server;
let base: string;
const received: Received[] = [];
const routes = new Map<string, (req: IncomingMessage, res: ServerResponse) => void>();

before(async () => {
  server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
    const route = routes.get(new URL(req.url ?? '/', 'http://x').pathname);
    if (route) route(req, res);
    else {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function refusal(promise: Promise<unknown>): Promise<OutboundError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof OutboundError, `expected an OutboundError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the request to be refused');
}

async function expectCode(promise: Promise<unknown>, code: OutboundErrorCode): Promise<OutboundError> {
  const err = await refusal(promise);
  assert.equal(err.code, code, err.message);
  return err;
}

describe('the address guard', () => {
  const blockedHosts = [
    ['loopback', 'http://127.0.0.1/'],
    ['loopback, another address of 127/8', 'http://127.1.2.3/'],
    ['loopback written as one number', 'http://2130706433/'],
    ['loopback written in hex', 'http://0x7f.0.0.1/'],
    ['a host name resolving to loopback', 'http://localhost/'],
    ['private 10/8', 'http://10.1.2.3/'],
    ['private 172.16/12', 'http://172.31.255.1/'],
    ['private 192.168/16', 'https://192.168.1.10/'],
    ['carrier-grade NAT', 'http://100.64.0.1/'],
    ['link-local', 'http://169.254.10.1/'],
    ['the cloud metadata address', 'http://169.254.169.254/latest/meta-data/'],
    ['this network, 0.0.0.0', 'http://0.0.0.0:8080/'],
    ['multicast', 'http://224.0.0.251/'],
    ['reserved 240/4', 'http://240.0.0.1/'],
    ['broadcast', 'http://255.255.255.255/'],
    ['IPv6 loopback', 'http://[::1]/'],
    ['IPv6 unspecified', 'http://[::]/'],
    ['IPv6 unique local', 'http://[fd12:3456::1]/'],
    ['IPv6 link-local', 'http://[fe80::1]/'],
    ['IPv6 multicast', 'http://[ff02::1]/'],
    ['IPv4-mapped loopback', 'http://[::ffff:127.0.0.1]/'],
    ['IPv4-mapped private', 'http://[::ffff:10.0.0.1]/'],
    ['IPv4-mapped metadata', 'http://[::ffff:169.254.169.254]/'],
    ['NAT64 of a private address', 'http://[64:ff9b::a00:1]/'],
    ['6to4', 'http://[2002:7f00:1::1]/'],
  ] as const;
  for (const [what, url] of blockedHosts) {
    test(`refuses ${what} (${url})`, async () => {
      const err = await expectCode(safeRequest({ method: 'POST', url, body: '{}' }, GUARD), 'blocked_address');
      assert.match(err.message, /OUTBOUND_ALLOW_PRIVATE/);
    });
  }

  test('names the address a host name resolved to', async () => {
    const err = await expectCode(safeRequest({ method: 'GET', url: `http://localhost:${new URL(base).port}/` }, GUARD), 'blocked_address');
    assert.match(err.message, /localhost resolves to (127\.0\.0\.1|::1)/);
  });

  test('public addresses pass the check', () => {
    for (const address of ['93.184.216.34', '8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '2a00:1450:4001::200e', '64:ff9b::808:808', '::ffff:8.8.8.8']) {
      assert.equal(isBlockedAddress(address), false, address);
    }
    for (const address of ['127.0.0.1', '::1', '::ffff:7f00:1', '64:ff9b::7f00:1', 'fe80::1%eth0', 'not an address']) {
      assert.equal(isBlockedAddress(address), true, address);
    }
  });

  test('a loopback receiver is reached when private addresses are allowed', async () => {
    const response = await safeRequest({ method: 'GET', url: `${base}/ok` }, ALLOW);
    assert.equal(response.status, 200);
    assert.equal(response.body, '{"ok":true}');
    const viaName = await safeRequest({ method: 'GET', url: `http://localhost:${new URL(base).port}/ok` }, ALLOW);
    assert.equal(viaName.status, 200);
  });

  test('the guard refuses before anything is sent', async () => {
    const before = received.length;
    await expectCode(safeRequest({ method: 'POST', url: `${base}/ok`, body: 'x' }, GUARD), 'blocked_address');
    assert.equal(received.length, before);
  });
});

describe('URLs', () => {
  for (const [what, url] of [
    ['not a URL', 'not a url'],
    ['another scheme', 'ftp://example.com/file'],
    ['a file URL', 'file:///etc/passwd'],
    ['a user name and password', 'https://user:secret@example.com/hook'],
  ] as const) {
    test(`refuses ${what}`, async () => {
      const err = await expectCode(safeRequest({ method: 'GET', url }, ALLOW), 'bad_url');
      assert.doesNotMatch(err.message, /secret/);
    });
  }
});

describe('requests and answers', () => {
  test('sends the method, headers and body, and reads status, headers and body', async () => {
    routes.set('/echo', (req, res) => {
      res.writeHead(201, { 'content-type': 'text/plain', 'x-seen': req.headers['x-event'] ?? '' });
      res.end('created');
    });
    const response = await safeRequest({ method: 'put', url: `${base}/echo?a=1`, headers: { 'content-type': 'application/json', 'x-event': 'member.created' }, body: '{"é":1}' }, ALLOW);
    assert.equal(response.status, 201);
    assert.equal(response.body, 'created');
    assert.equal(response.truncated, false);
    assert.equal(response.headers['x-seen'], 'member.created');
    assert.equal(typeof response.ms, 'number');
    const last = received.at(-1)!;
    assert.equal(last.method, 'PUT');
    assert.equal(last.url, '/echo?a=1');
    assert.equal(last.body, '{"é":1}');
    assert.equal(last.headers['content-length'], String(Buffer.byteLength('{"é":1}')));
  });

  test('a redirect is the answer: it is not followed', async () => {
    routes.set('/moved', (_req, res) => {
      res.writeHead(302, { location: `${base}/target` });
      res.end();
    });
    const before = received.length;
    const response = await safeRequest({ method: 'POST', url: `${base}/moved`, body: '{}' }, ALLOW);
    assert.equal(response.status, 302);
    assert.equal(response.headers.location, `${base}/target`);
    assert.equal(received.length, before + 1);
    assert.ok(!received.some((entry) => entry.url === '/target'));
  });

  test('a receiver that never answers times out', async () => {
    routes.set('/silent', () => {});
    const err = await expectCode(safeRequest({ method: 'POST', url: `${base}/silent`, body: '{}', timeoutMs: 150 }, ALLOW), 'timeout');
    assert.match(err.message, /within 150 ms/);
  });

  test('the timeout covers the body too, not just the first byte', async () => {
    routes.set('/trickle', (_req, res) => {
      res.writeHead(200);
      res.write('a');
      // and nothing more
    });
    await expectCode(safeRequest({ method: 'GET', url: `${base}/trickle`, timeoutMs: 150 }, ALLOW), 'timeout');
  });

  test('a large answer is cut at the cap and the rest is not read', async () => {
    let serverSawClose = false;
    routes.set('/huge', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const chunk = Buffer.alloc(64 * 1024, 'x');
      let sent = 0;
      res.on('close', () => {
        serverSawClose = !res.writableFinished;
      });
      const pump = () => {
        while (sent < 64 * 1024 * 1024) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    const response = await safeRequest({ method: 'GET', url: `${base}/huge`, maxResponseBytes: 1000 }, ALLOW);
    assert.equal(response.status, 200);
    assert.equal(response.truncated, true);
    assert.equal(response.body.length, 1000);
    await new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < 50 && !serverSawClose; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(serverSawClose, true, 'the receiver saw the connection closed before it finished sending');
  });

  test('an answer exactly at the cap is whole', async () => {
    routes.set('/exact', (_req, res) => res.end('x'.repeat(500)));
    const response = await safeRequest({ method: 'GET', url: `${base}/exact`, maxResponseBytes: 500 }, ALLOW);
    assert.equal(response.truncated, false);
    assert.equal(response.body.length, 500);
  });

  test('oversized answer headers are refused', async () => {
    routes.set('/big-headers', (_req, res) => {
      res.writeHead(200, { 'x-filler': 'y'.repeat(20_000) });
      res.end();
    });
    await expectCode(safeRequest({ method: 'GET', url: `${base}/big-headers` }, ALLOW), 'response_too_large');
  });

  test('a closed port is a connect error that names the host, never the headers or the path', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const err = await expectCode(
      safeRequest({ method: 'POST', url: `http://127.0.0.1:${port}/hooks/secret-path?token=query-secret`, headers: { authorization: 'Bearer header-secret' }, body: 'body-secret' }, ALLOW),
      'connect',
    );
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    assert.doesNotMatch(err.message, /secret/);
  });

  test('a header Node cannot send is refused without repeating its value', async () => {
    const before = received.length;
    const err = await expectCode(safeRequest({ method: 'POST', url: `${base}/ok`, headers: { authorization: 'Bearer secret-value\r\nx-injected: 1' }, body: '{}' }, ALLOW), 'network');
    assert.doesNotMatch(err.message, /secret-value|injected/);
    assert.equal(received.length, before);
  });

  test('an unknown host is a DNS error', async () => {
    await expectCode(safeRequest({ method: 'GET', url: 'http://no-such-host.invalid/' }, ALLOW), 'dns');
  });

  test('a receiver that hangs up mid-answer is a network error', async () => {
    routes.set('/hangup', (req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      setImmediate(() => req.socket.destroy());
    });
    const err = await refusal(safeRequest({ method: 'GET', url: `${base}/hangup` }, ALLOW));
    assert.equal(err.code, 'network');
  });
});

describe('OUTBOUND_ALLOW_PRIVATE', () => {
  test('is off unless set to 1', () => {
    assert.equal(loadConfig({}).outbound.allowPrivate, false);
    assert.equal(loadConfig({ OUTBOUND_ALLOW_PRIVATE: '0' }).outbound.allowPrivate, false);
    assert.equal(loadConfig({ OUTBOUND_ALLOW_PRIVATE: '1' }).outbound.allowPrivate, true);
    assert.throws(() => loadConfig({ OUTBOUND_ALLOW_PRIVATE: 'yes please' }), /Invalid setting OUTBOUND_ALLOW_PRIVATE: expected 1 \(allow\) or 0 \(refuse\)/);
  });
});
