import ipaddr from 'ipaddr.js';
import { ConfigError } from '../errors.js';
import type { RequestView } from '../http.js';
import { recentMap } from '../recent-map.js';

/**
 * Which proxies to believe: names (`'loopback'`, `'private'`, `'linklocal'`), CIDRs and single
 * addresses, as a list or one comma-separated string; a number N to trust the N nearest hops
 * (the TCP peer is hop 0); or a function that decides per address and hop.
 */
export type TrustProxy = number | string | readonly string[] | ((address: string, hop: number) => boolean);

/** The client address and scheme of a request, as believed through trusted proxies. */
export interface ProxyTrust {
  /** The client address: the right-most untrusted hop, normalised; undefined when unknown or malformed. */
  clientIp(request: RequestView): string | undefined;
  /** TLS to us, or https per the X-Forwarded-Proto / Forwarded proto of a trusted peer. */
  isSecure(request: RequestView): boolean;
}

/** A parsed address; IPv4-mapped IPv6 already unwrapped to IPv4. */
export type IpAddress = ipaddr.IPv4 | ipaddr.IPv6;

/** Whether a parsed address lies in one of a set of ranges. */
export type RangeMatcher = (address: IpAddress) => boolean;

const MAX_ADDRESS_LENGTH = 64;
const MAX_PROTO_LENGTH = 16;

const NAMED_RANGES: ReadonlyMap<string, readonly string[]> = new Map([
  ['loopback', ['127.0.0.0/8', '::1/128']],
  ['private', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7']],
  ['linklocal', ['169.254.0.0/16', 'fe80::/10']],
]);

const unwrap = (address: IpAddress): IpAddress =>
  address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()
    ? (address as ipaddr.IPv6).toIPv4Address()
    : address;

const DOTTED_QUAD =
  /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

const PEERS_KEPT = 10_000;

/**
 * Plain four-part decimal IPv4 only (no octal, hex or short forms). One regular expression
 * instead of ipaddr's general parser: every request with a proxy header parses two or more.
 */
function parseDottedQuad(text: string): IpAddress | undefined {
  const match = DOTTED_QUAD.exec(text);
  return match ? new ipaddr.IPv4([Number(match[1]), Number(match[2]), Number(match[3]), Number(match[4])]) : undefined;
}

/** A bare address (no brackets, no port); rejects zone IDs and ipaddr's legacy IPv4 forms. */
function parseBare(text: string): IpAddress | undefined {
  if (text.length === 0 || text.length > MAX_ADDRESS_LENGTH) return undefined;
  if (!text.includes(':')) return parseDottedQuad(text);
  // A zone ID names an interface of the sending host: meaningless to us, and a way to vary one address.
  if (text.includes('%')) return undefined;
  // ipaddr reads an embedded IPv4 part with parseInt, so '::ffff:0x7f.1.1.1' would pass.
  const dot = text.indexOf('.');
  if (dot !== -1 && !ipaddr.IPv4.isValidFourPartDecimal(text.slice(text.lastIndexOf(':') + 1))) return undefined;
  try {
    return ipaddr.IPv6.parse(text);
  } catch (error) {
    if (error instanceof Error && error.message.startsWith('ipaddr:')) return undefined;
    throw error;
  }
}

/**
 * Parses an address as a peer or a proxy header gives it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
 * `[2001:db8::1]` or `[2001:db8::1]:443`. IPv4-mapped IPv6 comes back as IPv4.
 *
 * @example
 * ```ts
 * parseIp('[::ffff:192.0.2.1]:443')?.toString(); // '192.0.2.1'
 * ```
 */
export function parseIp(raw: string): IpAddress | undefined {
  if (raw.length === 0 || raw.length > MAX_ADDRESS_LENGTH) return undefined;
  let text = raw;
  if (text.charCodeAt(0) === 91 /* [ */) {
    const close = text.indexOf(']');
    if (close === -1) return undefined;
    const rest = text.slice(close + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return undefined;
    text = text.slice(1, close);
    if (!text.includes(':')) return undefined;
  } else {
    const colon = text.indexOf(':');
    // One colon: IPv4 with a port. Two or more: a bare IPv6 address.
    if (colon !== -1 && colon === text.lastIndexOf(':')) {
      if (!/^\d{1,5}$/.test(text.slice(colon + 1))) return undefined;
      text = text.slice(0, colon);
    }
  }
  // Dual-stack sockets report IPv4 peers as '::ffff:a.b.c.d'; reading the IPv4 part directly is twice as fast.
  if (
    text.length > 7 &&
    text.slice(0, 7).toLowerCase() === '::ffff:' &&
    text.indexOf(':', 7) === -1 &&
    text.includes('.', 7)
  ) {
    return parseBare(text.slice(7));
  }
  const address = parseBare(text);
  return address === undefined ? undefined : unwrap(address);
}

/**
 * The canonical form of an address: IPv4 dotted decimal, IPv6 per RFC 5952, IPv4-mapped IPv6
 * unwrapped to IPv4, port and brackets removed. `undefined` for anything else (zone IDs,
 * octal/hex/short IPv4 such as `0x7f.1` or `127.1`, empty or overlong strings).
 *
 * @example
 * ```ts
 * normalizeIp('::ffff:192.0.2.1'); // '192.0.2.1'
 * normalizeIp('[2001:DB8:0::1]:80'); // '2001:db8::1'
 * normalizeIp('127.1'); // undefined
 * ```
 */
export function normalizeIp(raw: string): string | undefined {
  return parseIp(raw)?.toString();
}

/** One CIDR or single address from configuration; throws a ConfigError naming `what`. */
function parseRange(entry: string, what: string): [IpAddress, number] {
  const slash = entry.indexOf('/');
  const addressText = slash === -1 ? entry : entry.slice(0, slash);
  const prefixText = slash === -1 ? undefined : entry.slice(slash + 1);
  const address = parseBare(addressText);
  const bits = address?.kind() === 'ipv4' ? 32 : 128;
  const prefix = prefixText === undefined ? bits : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN;
  if (address === undefined || !(prefix >= 0 && prefix <= bits)) {
    throw new ConfigError(
      `${what}: ${JSON.stringify(entry)} is not a name, an address or a CIDR; use 'loopback', 'private', 'linklocal', ` +
        `a four-part IPv4 or an IPv6 address, optionally with a prefix such as '10.0.0.0/8' or '2001:db8::/32'`,
    );
  }
  // Addresses are unwrapped before matching, so an IPv4-mapped range must be one too.
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress() && prefix >= 96) {
    return [(address as ipaddr.IPv6).toIPv4Address(), prefix - 96];
  }
  return [address, prefix];
}

/**
 * Parses a list of names, CIDRs and addresses once, into a matcher for parsed addresses.
 * Throws a {@link ConfigError} naming `what` for an entry that is none of these.
 *
 * @example
 * ```ts
 * const isShared = compileRanges(['100.64.0.0/10'], 'sharedRanges');
 * isShared(parseIp('100.64.1.2')!); // true
 * ```
 */
export function compileRanges(entries: readonly string[], what: string): RangeMatcher {
  const v4: [ipaddr.IPv4, number][] = [];
  const v6: [ipaddr.IPv6, number][] = [];
  for (const raw of entries) {
    if (typeof raw !== 'string') throw new ConfigError(`${what}: every entry must be a string; got ${typeof raw}`);
    const entry = raw.trim();
    if (entry === '') continue;
    for (const range of NAMED_RANGES.get(entry.toLowerCase()) ?? [entry]) {
      const [address, prefix] = parseRange(range, what);
      if (address.kind() === 'ipv4') v4.push([address as ipaddr.IPv4, prefix]);
      else v6.push([address as ipaddr.IPv6, prefix]);
    }
  }
  return (address) => {
    if (address.kind() === 'ipv4') {
      for (const range of v4) if ((address as ipaddr.IPv4).match(range)) return true;
    } else {
      for (const range of v6) if ((address as ipaddr.IPv6).match(range)) return true;
    }
    return false;
  };
}

type HopTrust = (address: IpAddress, hop: number) => boolean;

function compileTrust(trust: TrustProxy | undefined): HopTrust {
  if (trust === undefined) return () => false;
  if (typeof trust === 'function') return (address, hop) => trust(address.toString(), hop) === true;
  if (typeof trust === 'number') {
    if (!Number.isSafeInteger(trust) || trust < 0) {
      throw new ConfigError(
        `trustProxy as a number is how many hops to trust and must be a whole number of 0 or more; got ${trust}`,
      );
    }
    return (_address, hop) => hop < trust;
  }
  if (typeof trust === 'string') return ignoreHop(compileRanges(trust.split(','), 'trustProxy'));
  if (Array.isArray(trust)) return ignoreHop(compileRanges(trust, 'trustProxy'));
  throw new ConfigError(
    `trustProxy must be a number of hops, a list of names/CIDRs, a comma-separated string or a function; got ${typeof trust}`,
  );
}

const ignoreHop =
  (matches: RangeMatcher): HopTrust =>
  (address) =>
    matches(address);

const isOws = (code: number): boolean => code === 32 /* space */ || code === 9; /* tab */

/**
 * `text.slice(start, end)` without optional whitespace at either end (RFC 9110 §5.6.1). A loop
 * over character codes, not a regular expression: `/[ \t]+$/` retries from every position of a
 * run of spaces, quadratic in the run, and the run is the client's to choose.
 */
function trimOws(text: string, start = 0, end = text.length): string {
  while (start < end && isOws(text.charCodeAt(start))) start++;
  while (end > start && isOws(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

/** From the right: the end of a proxy header is what the nearest proxy wrote, so this stops at once. */
const isBlank = (text: string): boolean => {
  for (let i = text.length - 1; i >= 0; i--) if (!isOws(text.charCodeAt(i))) return false;
  return true;
};

/** A `Forwarded` element's parameters by lower-case name. */
type ForwardedElement = Map<string, string>;

/** RFC 9110 tchar, by character code: a table lookup per character of a header. */
const TOKEN_CHARS = new Uint8Array(128);
for (const char of "!#$%&'*+.^_`|~-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  TOKEN_CHARS[char.charCodeAt(0)] = 1;
}
const isTokenChar = (code: number): boolean => code < 128 && TOKEN_CHARS[code] === 1;

/**
 * Parses an RFC 7239 `Forwarded` header into its elements, left to right; `undefined` when
 * it does not follow the grammar (a quoted string may hold `,` and `;`, so no naive split).
 */
function parseForwarded(header: string): ForwardedElement[] | undefined {
  const elements: ForwardedElement[] = [];
  let element: ForwardedElement = new Map();
  let i = 0;
  const n = header.length;
  const skipOws = () => {
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
  };
  for (;;) {
    skipOws();
    const nameStart = i;
    while (i < n && isTokenChar(header.charCodeAt(i))) i++;
    if (i > nameStart) {
      const name = header.slice(nameStart, i).toLowerCase();
      if (header[i] !== '=') return undefined;
      i++;
      let value = '';
      if (header[i] === '"') {
        i++;
        for (;;) {
          if (i >= n) return undefined;
          const char = header[i] as string;
          if (char === '"') break;
          if (char === '\\') {
            i++;
            if (i >= n) return undefined;
          }
          value += header[i];
          i++;
        }
        i++;
      } else {
        const valueStart = i;
        while (i < n && isTokenChar(header.charCodeAt(i))) i++;
        if (i === valueStart) return undefined;
        value = header.slice(valueStart, i);
      }
      // RFC 7239 §4: a parameter must not occur more than once per element.
      if (element.has(name)) return undefined;
      element.set(name, value);
      skipOws();
    }
    if (i >= n) {
      elements.push(element);
      return elements;
    }
    if (header[i] === ';') {
      i++;
    } else if (header[i] === ',') {
      elements.push(element);
      element = new Map();
      i++;
    } else {
      return undefined;
    }
  }
}

/** A `for=` node: an address, `[IPv6]` with an optional port; `unknown` and `_obfuscated` give undefined. */
function parseForwardedNode(node: string | undefined): IpAddress | undefined {
  if (node === undefined) return undefined;
  // RFC 7239 §6: IPv6 must be bracketed; a bare one with a port would be ambiguous.
  if (node.charCodeAt(0) !== 91 /* [ */ && node.indexOf(':') !== node.lastIndexOf(':')) return undefined;
  return parseIp(node);
}

/** The hops that proxies reported, nearest first; `undefined` for a malformed or unknown hop. */
function* reportedHops(request: RequestView): Generator<IpAddress | undefined> {
  const xff = request.header('x-forwarded-for');
  if (xff !== undefined) {
    // Walk from the right without splitting: only as much of the header as is trusted gets parsed.
    if (isBlank(xff)) return;
    let end = xff.length;
    for (;;) {
      const comma = end === 0 ? -1 : xff.lastIndexOf(',', end - 1);
      yield parseIp(trimOws(xff, comma + 1, end));
      if (comma === -1) return;
      end = comma;
    }
  }
  const forwarded = request.header('forwarded');
  if (forwarded === undefined || isBlank(forwarded)) return;
  const elements = parseForwarded(forwarded);
  if (elements === undefined) {
    yield undefined;
    return;
  }
  for (let i = elements.length - 1; i >= 0; i--) yield parseForwardedNode(elements[i]?.get('for'));
}

/** The proto the nearest proxy reported: the right-most value, which that proxy wrote or passed on. */
function reportedProto(request: RequestView): string | undefined {
  const xfp = request.header('x-forwarded-proto');
  if (xfp !== undefined) {
    const proto = trimOws(xfp, xfp.lastIndexOf(',') + 1);
    // A scheme has no business being long: 'https' is five characters.
    return proto.length > MAX_PROTO_LENGTH ? undefined : proto.toLowerCase();
  }
  const forwarded = request.header('forwarded');
  if (forwarded === undefined) return undefined;
  return parseForwarded(forwarded)?.at(-1)?.get('proto')?.toLowerCase();
}

/**
 * Builds the client-address logic for a `trustProxy` setting. By default nobody is trusted:
 * X-Forwarded-For and Forwarded are ignored and the TCP peer is the client. Otherwise the
 * walk starts at the peer and, while the current hop is trusted, steps one entry to the left
 * of X-Forwarded-For (or of the `for=` entries of Forwarded when X-Forwarded-For is absent).
 * Ranges are parsed here, once.
 *
 * @example
 * ```ts
 * const proxies = createProxyTrust(['loopback', '10.0.0.0/8']);
 * proxies.clientIp(request); // '203.0.113.9'
 * proxies.isSecure(request); // true behind a TLS-terminating proxy that sends X-Forwarded-Proto: https
 * ```
 */
export function createProxyTrust(trust?: TrustProxy): ProxyTrust {
  const trusted = compileTrust(trust);
  // A client sends many requests from one address: each peer address is parsed once.
  const peers = recentMap<string, { readonly address: IpAddress; readonly text: string } | null>(PEERS_KEPT);
  const peerOf = (request: RequestView) => {
    const given = request.peerAddress;
    if (given === undefined) return undefined;
    let peer = peers.get(given);
    if (peer === undefined) {
      const address = parseIp(given);
      peer = address ? { address, text: address.toString() } : null;
      peers.set(given, peer);
    }
    return peer ?? undefined;
  };

  return {
    clientIp(request) {
      const peer = peerOf(request);
      if (peer === undefined) return undefined;
      if (!trusted(peer.address, 0)) return peer.text;
      let current = peer.address;
      let hop = 0;
      for (const next of reportedHops(request)) {
        // A hop we cannot read ends the walk: the client is unknown, and guessing could pick a forged entry.
        if (next === undefined) return undefined;
        current = next;
        hop++;
        if (!trusted(current, hop)) return current.toString();
      }
      return current.toString();
    },

    isSecure(request) {
      if (request.encrypted) return true;
      const peer = peerOf(request);
      if (peer === undefined || !trusted(peer.address, 0)) return false;
      return reportedProto(request) === 'https';
    },
  };
}
