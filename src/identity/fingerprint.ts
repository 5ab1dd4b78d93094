import type ipaddr from 'ipaddr.js';
import { perKeyRing } from '../crypto.js';
import { type Duration, toMs } from '../duration.js';
import { ConfigError } from '../errors.js';
import { recentMap } from '../recent-map.js';
import { compileRanges, type IpAddress, parseIp } from './client-ip.js';
import type { Resolver, ResolverContext } from './types.js';
import { createUaReducer } from './ua.js';

/** Options of {@link fingerprintResolver}. */
export interface FingerprintOptions {
  /**
   * How many leading bits of an IPv4 address count (8 to 32).
   * @default 32
   */
  ipv4Prefix?: number;
  /**
   * How many leading bits of an IPv6 address count (16 to 128); a /64 is one subscriber's network.
   * @default 64
   */
  ipv6Prefix?: number;
  /**
   * Whether the browser's major version is a signal; a browser update then changes the fingerprint.
   * @default false
   */
  majorVersion?: boolean;
  /**
   * Further request headers (lower-case names) that count, e.g. `['accept-language', 'sec-ch-ua-platform']`.
   * @default []
   */
  headers?: readonly string[];
  /**
   * Ranges known to be shared by many clients, never fingerprinted: CIDRs, addresses or the
   * names `'loopback'`, `'private'`, `'linklocal'`.
   * @default ['100.64.0.0/10'] (RFC 6598 carrier-grade NAT)
   */
  sharedRanges?: readonly string[];
  /**
   * Whether this request may be fingerprinted, e.g. the visitor's consent. When given, it
   * alone decides; without it, a request that sends `Sec-GPC: 1` (Global Privacy Control)
   * is not fingerprinted.
   * @default every request, except those that send `Sec-GPC: 1`
   */
  when?: (ctx: ResolverContext) => boolean;
  /**
   * Cap on the lifetime of what is stored under a fingerprint.
   * @default '24h'
   */
  ttl?: Duration;
  /**
   * How many distinct User-Agent strings to keep parsed.
   * @default 1000
   */
  uaCacheSize?: number;
}

const MAX_HEADER_SIGNAL = 128;
const FINGERPRINTS_KEPT = 10_000;
// No signal contains it: addresses are hex digits and ':', the reduced UA has no line
// breaks, and header signals are stripped of them.
const SEPARATOR = '\n';
const LINE_BREAK = /[\r\n]/g;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

const checkPrefix = (value: number, min: number, max: number, what: string): number => {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${what} must be a whole number from ${min} to ${max}; got ${value}`);
  }
  return value;
};

/** The network part of an address as text; the host bits never leave this function. */
function maskAddress(address: IpAddress, ipv4Prefix: number, ipv6Prefix: number): string {
  if (address.kind() === 'ipv4') {
    const [a = 0, b = 0, c = 0, d = 0] = (address as ipaddr.IPv4).octets;
    const mask = ipv4Prefix === 0 ? 0 : (~0 << (32 - ipv4Prefix)) >>> 0;
    return String((((a << 24) | (b << 16) | (c << 8) | d) & mask) >>> 0);
  }
  const parts = (address as ipaddr.IPv6).parts;
  let text = '';
  for (let i = 0, bits = ipv6Prefix; bits > 0; i++, bits -= 16) {
    const part = parts[i] ?? 0;
    text += `${(bits >= 16 ? part : part & (0xffff << (16 - bits))).toString(16)}:`;
  }
  return text;
}

/** `Sec-GPC: 1`, the one value the Global Privacy Control draft defines; anything else is no signal. */
const optedOut = (value: string | undefined): boolean =>
  value !== undefined && value.length < 16 && value.trim() === '1';

function headerSignal(value: string | undefined): string {
  if (value === undefined) return '';
  const signal = value.trim().toLowerCase();
  return (signal.length > MAX_HEADER_SIGNAL ? signal.slice(0, MAX_HEADER_SIGNAL) : signal).replace(LINE_BREAK, '');
}

/**
 * A resolver for clients that keep no cookies: an HMAC over the client's network (an IPv4
 * address, an IPv6 /64 by default), the reduced User-Agent and optional headers. The raw
 * address and User-Agent are neither stored nor logged; only this process's memory keeps
 * recent User-Agents with their reduced form (`uaCacheSize`), and the masked signals of up to
 * 10,000 recent clients with their IDs, so that each is worked out once. Many people can share
 * a fingerprint, so its confidence is `'low'`, it is never written into the visitor cookie, and
 * what is stored under it lives at most `ttl`. Addresses in `sharedRanges`, unknown client
 * addresses, requests that `when` refuses and, without a `when`, requests that send
 * `Sec-GPC: 1` are not fingerprinted.
 *
 * @example
 * ```ts
 * const visitors = createVisitorState({
 *   secret: process.env.VISITOR_STATE_SECRET,
 *   resolvers: [cookieResolver(), fingerprintResolver({ when: (ctx) => ctx.cookies.consent === 'yes' })],
 * });
 * ```
 */
export function fingerprintResolver(options: FingerprintOptions = {}): Resolver {
  const {
    ipv4Prefix = 32,
    ipv6Prefix = 64,
    majorVersion = false,
    headers = [],
    sharedRanges = ['100.64.0.0/10'],
    when,
    ttl = '24h',
    uaCacheSize = 1000,
  } = options;

  checkPrefix(ipv4Prefix, 8, 32, 'fingerprint ipv4Prefix');
  checkPrefix(ipv6Prefix, 16, 128, 'fingerprint ipv6Prefix');
  if (!Array.isArray(headers)) {
    throw new ConfigError(`fingerprint headers must be a list of header names such as ['accept-language']`);
  }
  const headerNames = headers.map((name: unknown) => {
    const lower = typeof name === 'string' ? name.trim().toLowerCase() : '';
    if (!HEADER_NAME.test(lower)) {
      throw new ConfigError(
        `fingerprint headers: ${JSON.stringify(name)} is not a header name; use e.g. 'accept-language'`,
      );
    }
    return lower;
  });
  if (!Array.isArray(sharedRanges)) {
    throw new ConfigError(
      `fingerprint sharedRanges must be a list of CIDRs such as ['100.64.0.0/10']; use [] for none`,
    );
  }
  const isShared = compileRanges(sharedRanges, 'fingerprint sharedRanges');
  if (when !== undefined && typeof when !== 'function') {
    throw new ConfigError('fingerprint when must be a function (ctx) => boolean, e.g. one that checks consent');
  }
  if (!Number.isSafeInteger(uaCacheSize) || uaCacheSize < 1) {
    throw new ConfigError(
      `fingerprint uaCacheSize must be a whole number of 1 or more (e.g. 1000); got ${uaCacheSize}`,
    );
  }
  const maxTtl = toMs(ttl, 'fingerprint ttl');
  const reduceUa = createUaReducer({ maxEntries: uaCacheSize, majorVersion });
  // Fingerprint IDs by their signals, under each key ring: an HMAC is most of a fingerprint's cost.
  const derivedFor = perKeyRing(() => recentMap<string, string>(FINGERPRINTS_KEPT));

  return {
    name: 'fingerprint',
    resolve(ctx) {
      if (when === undefined ? optedOut(ctx.header('sec-gpc')) : !when(ctx)) return undefined;
      const clientIp = ctx.clientIp;
      if (clientIp === undefined) return undefined;
      const address = parseIp(clientIp);
      if (address === undefined || isShared(address)) return undefined;
      let signals = `${maskAddress(address, ipv4Prefix, ipv6Prefix)}${SEPARATOR}${reduceUa(ctx.header('user-agent'))}`;
      for (const name of headerNames) signals += `${SEPARATOR}${headerSignal(ctx.header(name))}`;
      // A client without cookies comes back with the same signals: its ID is derived once.
      const known = derivedFor(ctx.keys);
      let id = known.get(signals);
      if (id === undefined) {
        id = ctx.keys.mac('fingerprint', signals, 16);
        known.set(signals, id);
      }
      return { id, confidence: 'low', persist: false, maxTtl };
    },
  };
}
