import { lookup as dnsLookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * One HTTP request to an address an administrator typed in (an outbound webhook, an OAuth token endpoint), made so
 * that it cannot be turned against the machine it runs on or the network behind it (SSRF): the host is resolved
 * first, every address it resolves to is checked against the private, loopback, link-local (cloud metadata) and
 * reserved ranges, and the connection is made to the checked address itself, so a DNS answer that changes between
 * the check and the connection (rebinding) is never used. Redirects are never followed: a 3xx is the answer.
 */

export interface OutboundRequest {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: string;
  /** The whole request: DNS, connect, sending, and the answer to its last byte. */
  timeoutMs?: number;
  /** The answer's body is kept up to this many bytes (then `truncated`); the rest is not read. */
  maxResponseBytes?: number;
}

export interface OutboundResponse {
  status: number;
  /** Lowercase names; a header sent more than once is joined with ", ". */
  headers: Record<string, string>;
  /** The body as UTF-8, at most maxResponseBytes of it. */
  body: string;
  truncated: boolean;
  /** From the start of the request to the answer's end (or its cut). */
  ms: number;
}

export type OutboundErrorCode = 'blocked_address' | 'bad_url' | 'dns' | 'connect' | 'timeout' | 'response_too_large' | 'network';

/**
 * Why a request got no answer. The message names the host and port, never a header, the body, the path or the
 * query (an admin may put a token in a URL); it is meant for the delivery log and the admin pages.
 */
export class OutboundError extends Error {
  override name = 'OutboundError';
  constructor(
    readonly code: OutboundErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface OutboundPolicy {
  /** OUTBOUND_ALLOW_PRIVATE=1: private and loopback addresses are allowed (tests, a receiver on the same network). */
  allowPrivate: boolean;
}

export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024;
/** An answer's headers beyond this are refused (Node's own default is 16 KiB; a receiver has no need for more). */
const MAX_HEADER_BYTES = 16 * 1024;

/**
 * The ranges no outbound request may reach unless private addresses are allowed: IANA's special-purpose registries
 * (RFC 6890 and its updates), everything that is not globally reachable unicast. IPv4-mapped IPv6 addresses
 * (`::ffff:127.0.0.1`) are checked as the IPv4 address they carry (BlockList does that).
 */
const BLOCKED_V4: Array<[string, number]> = [
  ['0.0.0.0', 8], // "this network"; 0.0.0.0 itself reaches the local machine
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, where cloud metadata lives (169.254.169.254)
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and 255.255.255.255 broadcast
];
const BLOCKED_V6: Array<[string, number]> = [
  ['::', 96], // unspecified (::), loopback (::1) and the deprecated IPv4-compatible addresses
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard-only
  ['2001::', 23], // IETF protocol assignments (Teredo, benchmarking, ORCHID...)
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4: carries an IPv4 address a relay would reach
  ['3fff::', 20], // documentation
  ['5f00::', 16], // segment routing
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated, still routed by some stacks)
  ['ff00::', 8], // multicast
];

const blocked = new BlockList();
for (const [network, prefix] of BLOCKED_V4) blocked.addSubnet(network, prefix, 'ipv4');
for (const [network, prefix] of BLOCKED_V6) blocked.addSubnet(network, prefix, 'ipv6');
/** NAT64 (RFC 6052): the last 32 bits are the IPv4 address the gateway connects to. */
const NAT64_WELL_KNOWN = new BlockList();
NAT64_WELL_KNOWN.addSubnet('64:ff9b::', 96, 'ipv6');

/** True when the address (IPv4 or IPv6, as text) is one an outbound request must not reach by default. */
export function isBlockedAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return blocked.check(address, 'ipv4');
  if (family !== 6) return true;
  if (blocked.check(address, 'ipv6')) return true;
  if (NAT64_WELL_KNOWN.check(address, 'ipv6')) return blocked.check(embeddedIpv4(address), 'ipv4');
  return false;
}

/** The IPv4 address in an IPv6 address's last 32 bits. */
function embeddedIpv4(address: string): string {
  const groups = expandIpv6(address);
  const high = groups[6]!;
  const low = groups[7]!;
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}

/** An IPv6 address's eight 16-bit groups (`::` filled in, a trailing dotted IPv4 part turned into two groups). */
function expandIpv6(address: string): number[] {
  let text = address.split('%')[0]!;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const parse = (part: string) => (part ? part.split(':').map((group) => parseInt(group, 16)) : []);
  const front = parse(head);
  const back = tail === undefined ? [] : parse(tail);
  return [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
}

// Keep-alive agents: deliveries to one receiver reuse their connections. A kept socket was connected to an address
// that was checked when it was opened; the agent closes idle sockets before most servers' own 5 s idle timeout.
const agentOptions = { keepAlive: true, timeout: 4_000, maxFreeSockets: 64 };
const httpAgent = new http.Agent(agentOptions);
const httpsAgent = new https.Agent(agentOptions);

/**
 * Sends the request and reads the answer, whatever its status (a 3xx, a 4xx and a 5xx are answers; the caller
 * decides). Throws OutboundError when there is no answer: a refused or bad URL, DNS, connection, timeout, network.
 */
export async function safeRequest(req: OutboundRequest, policy: OutboundPolicy): Promise<OutboundResponse> {
  const started = performance.now();
  const timeoutMs = req.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxResponseBytes = req.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const url = parseTarget(req.url);
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  const where = `${url.hostname}:${port}`;

  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), timeoutMs);
  try {
    const target = await withDeadline(resolveChecked(hostname, where, policy), deadline.signal, timeoutMs, where);
    return await send(req, url, target, where, { signal: deadline.signal, timeoutMs, maxResponseBytes, started });
  } finally {
    clearTimeout(timer);
  }
}

function parseTarget(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new OutboundError('bad_url', 'the URL is not a valid URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new OutboundError('bad_url', `only http and https URLs are allowed (got ${url.protocol.slice(0, 20)})`);
  // Credentials in the URL would end up in logs and the delivery log; the connection's authentication carries them.
  if (url.username || url.password) throw new OutboundError('bad_url', 'the URL must not hold a user name or password (use the connection\'s authentication)');
  if (!url.hostname) throw new OutboundError('bad_url', 'the URL has no host');
  return url;
}

interface CheckedAddress {
  address: string;
  family: 4 | 6;
}

/**
 * The address to connect to, after checking every address the host resolves to: a host with one private address
 * among public ones is refused, since which one a connection gets is not ours to choose.
 */
async function resolveChecked(hostname: string, where: string, policy: OutboundPolicy): Promise<CheckedAddress> {
  const literal = isIP(hostname);
  let addresses: CheckedAddress[];
  if (literal) {
    addresses = [{ address: hostname, family: literal as 4 | 6 }];
  } else {
    try {
      addresses = (await dnsLookup(hostname, { all: true, verbatim: true })) as CheckedAddress[];
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOTFOUND' || code === 'ENODATA' ? 'no such host' : `lookup failed (${code ?? 'unknown error'})`;
      throw new OutboundError('dns', `${hostname}: ${why}`, { cause: err });
    }
    if (addresses.length === 0) throw new OutboundError('dns', `${hostname}: no address`);
  }
  if (!policy.allowPrivate) {
    const refused = addresses.find((entry) => isBlockedAddress(entry.address));
    if (refused) {
      const via = literal ? '' : ` (${hostname} resolves to ${refused.address})`;
      throw new OutboundError('blocked_address', `${where} is a private, loopback, link-local or reserved address${via}; set OUTBOUND_ALLOW_PRIVATE=1 to allow it`);
    }
  }
  return addresses[0]!;
}

function withDeadline<T>(work: Promise<T>, signal: AbortSignal, timeoutMs: number, where: string): Promise<T> {
  if (signal.aborted) return Promise.reject(timeoutError(timeoutMs, where));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(timeoutError(timeoutMs, where));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

function timeoutError(timeoutMs: number, where: string): OutboundError {
  return new OutboundError('timeout', `${where} did not answer within ${timeoutMs} ms`);
}

function send(
  req: OutboundRequest,
  url: URL,
  target: CheckedAddress,
  where: string,
  limits: { signal: AbortSignal; timeoutMs: number; maxResponseBytes: number; started: number },
): Promise<OutboundResponse> {
  // The connection goes to the address that was checked, whatever DNS says by now; TLS still verifies the host name.
  const pinned: LookupFunction = (_host, options, callback) => {
    if (options.all) (callback as (err: null, addresses: CheckedAddress[]) => void)(null, [target]);
    else callback(null, target.address, target.family);
  };
  const isHttps = url.protocol === 'https:';
  const headers: Record<string, string> = { ...req.headers };
  const body = req.body === undefined ? undefined : Buffer.from(req.body, 'utf8');
  if (body !== undefined && !Object.keys(headers).some((name) => name.toLowerCase() === 'content-length')) headers['content-length'] = String(body.length);

  const makeRequest = () => (isHttps ? https : http).request({
    method: req.method.toUpperCase(),
    protocol: url.protocol,
    hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
    port: url.port || (isHttps ? 443 : 80),
    path: `${url.pathname}${url.search}`,
    headers,
    lookup: pinned,
    agent: isHttps ? httpsAgent : httpAgent,
    maxHeaderSize: MAX_HEADER_BYTES,
    ...(isHttps ? { servername: isIP(url.hostname.replace(/^\[|\]$/g, '')) ? undefined : url.hostname } : {}),
  });
  return new Promise<OutboundResponse>((resolve, reject) => {
    let settled = false;
    const fail = (err: OutboundError) => {
      if (settled) return;
      settled = true;
      request.destroy();
      reject(err);
    };
    let request: http.ClientRequest;
    try {
      request = makeRequest();
    } catch (err) {
      // Node refuses a header name or value it cannot send (a newline in it) before anything goes out; its message
      // names the header, ours does not repeat the value.
      reject(new OutboundError('network', `${where}: the request could not be sent (${(err as NodeJS.ErrnoException).code ?? 'invalid request'})`, { cause: err }));
      return;
    }
    request.on('error', (err) => fail(describeFailure(err, where)));
    const onAbort = () => fail(timeoutError(limits.timeoutMs, where));
    if (limits.signal.aborted) return onAbort();
    limits.signal.addEventListener('abort', onAbort, { once: true });
    request.on('close', () => limits.signal.removeEventListener('abort', onAbort));
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      let kept = 0;
      let truncated = false;
      const finish = () => {
        if (settled) return;
        settled = true;
        resolve({
          status: response.statusCode ?? 0,
          headers: flattenHeaders(response.headers),
          body: Buffer.concat(chunks).toString('utf8'),
          truncated,
          ms: Math.round(performance.now() - limits.started),
        });
      };
      response.on('data', (chunk: Buffer) => {
        if (truncated) return;
        const room = limits.maxResponseBytes - kept;
        if (chunk.length > room) {
          if (room > 0) chunks.push(chunk.subarray(0, room));
          kept += Math.max(room, 0);
          truncated = true;
          // The rest is never read: the socket is closed rather than drained, so a huge answer costs nothing.
          finish();
          request.destroy();
          return;
        }
        chunks.push(chunk);
        kept += chunk.length;
      });
      response.on('end', finish);
      response.on('error', (err) => fail(describeFailure(err, where)));
      response.on('aborted', () => fail(new OutboundError('network', `${where} closed the connection before the answer ended`)));
    });
    if (body !== undefined) request.end(body);
    else request.end();
  });
}

function flattenHeaders(raw: http.IncomingHttpHeaders): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return headers;
}

const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'EHOSTDOWN', 'ENETDOWN']);

/** Node's error as an OutboundError whose message names the host and what went wrong, nothing of the request. */
function describeFailure(err: Error, where: string): OutboundError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code === 'HPE_HEADER_OVERFLOW') return new OutboundError('response_too_large', `${where} answered with headers over ${MAX_HEADER_BYTES} bytes`, { cause: err });
  if (CONNECT_CODES.has(code)) return new OutboundError('connect', `${where}: could not connect (${code})`, { cause: err });
  if (code.startsWith('ERR_TLS') || code.includes('CERT') || code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || code === 'SELF_SIGNED_CERT_IN_CHAIN') {
    return new OutboundError('connect', `${where}: the TLS certificate was refused (${code})`, { cause: err });
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') return new OutboundError('network', `${where} closed the connection (${code})`, { cause: err });
  if (code.startsWith('HPE_')) return new OutboundError('network', `${where} sent an answer that is not valid HTTP (${code})`, { cause: err });
  return new OutboundError('network', `${where}: ${code || 'the request failed'}`, { cause: err });
}
