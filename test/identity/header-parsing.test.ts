import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createKeyRing } from '../../src/crypto.js';
import type { RequestView } from '../../src/http.js';
import { createProxyTrust, normalizeIp, type TrustProxy } from '../../src/identity/client-ip.js';
import { cookieResolver } from '../../src/identity/cookie.js';
import { fingerprintResolver } from '../../src/identity/fingerprint.js';
import type { ResolverContext } from '../../src/identity/types.js';
import { createUaReducer } from '../../src/identity/ua.js';

// Every header the library reads, at up to 64 KB, against a plain reference parse: split, trim
// by hand, walk from the right. The references are slow and obvious; the library's parsers
// must agree with them and never throw. (How long a parse takes is for bench/identity.bench.ts.)

const MAX = 65_536;
const PEER = '127.0.0.1';

const request = (headers: Record<string, string>, peer = PEER): RequestView => ({
  header: (name) => headers[name],
  peerAddress: peer,
  encrypted: false,
  raw: undefined,
});

/** Optional whitespace off both ends, the plain way: from the left, then from the left of the reversed text. */
const refTrim = (text: string): string => {
  const left = text.replace(/^[ \t]+/, '');
  return [
    ...[...left]
      .reverse()
      .join('')
      .replace(/^[ \t]+/, ''),
  ]
    .reverse()
    .join('');
};

/** The client address through hops trusted by `trusted(hop)`: the reference walk over normalised hops, nearest first. */
function refWalk(hops: (string | undefined)[], trusted: (hop: number) => boolean): string | undefined {
  let current: string | undefined = PEER;
  if (!trusted(0)) return current;
  for (let hop = 1; hop <= hops.length; hop++) {
    current = hops[hop - 1];
    if (current === undefined || !trusted(hop)) return current;
  }
  return current;
}

const refXffHops = (xff: string) =>
  refTrim(xff) === ''
    ? []
    : xff
        .split(',')
        .reverse()
        .map((entry) => normalizeIp(refTrim(entry)));

/** Long runs of spaces, tabs and commas, addresses and short junk, cut to 64 KB. */
const run = (char: string) => fc.integer({ min: 1, max: MAX }).map((n) => char.repeat(n));
const piece = fc.oneof(
  fc.constantFrom(' ', '\t', ',', ', ', ' ,\t', ':', '[', ']'),
  run(' '),
  run('\t'),
  run(','),
  run(' ,\t'),
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV6().map((v6) => `[${v6}]:443`),
  fc.ipV4().map((v4) => `${v4}:8080`),
  fc.string({ maxLength: 12 }),
);
const shortRun = (char: string) => fc.integer({ min: 1, max: MAX / 8 }).map((n) => char.repeat(n));
const ows = fc.oneof(fc.constantFrom('', ' ', '\t', ' \t '), shortRun(' '), shortRun('\t'));
const address = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV6().map((v6) => `[${v6}]:443`),
  fc.constantFrom('127.0.0.1', '::1'),
);
/** Either junk of the pieces above run together, or a list of addresses with whitespace runs around the commas. */
const hostile = fc.oneof(
  fc.array(piece, { maxLength: 24 }).map((parts) => parts.join('').slice(0, MAX)),
  fc
    .array(fc.tuple(ows, fc.oneof(address, address, fc.constantFrom('', 'unknown', '1.2.3')), ows), { maxLength: 12 })
    .map((items) =>
      items
        .map(([a, hop, b]) => `${a}${hop}${b}`)
        .join(',')
        .slice(0, MAX),
    ),
);

const trusts: { name: string; trust: TrustProxy; trusted: (hop: number) => boolean }[] = [
  { name: 'every hop', trust: () => true, trusted: () => true },
  { name: 'three hops', trust: 3, trusted: (hop) => hop < 3 },
];

describe('X-Forwarded-For and X-Forwarded-Proto of up to 64 KB', () => {
  for (const { name, trust, trusted } of trusts) {
    it(`give the client the reference walk gives, trusting ${name}`, () => {
      const proxies = createProxyTrust(trust);
      fc.assert(
        fc.property(hostile, (xff) => {
          expect(proxies.clientIp(request({ 'x-forwarded-for': xff }))).toBe(refWalk(refXffHops(xff), trusted));
        }),
        { numRuns: 80 },
      );
    });
  }

  it('read the nearest entry through loopback proxies as the reference does', () => {
    const proxies = createProxyTrust(['loopback']);
    fc.assert(
      fc.property(hostile, (xff) => {
        const hops = refXffHops(xff);
        let expected: string | undefined = PEER;
        for (const hop of hops) {
          expected = hop;
          if (hop === undefined || !(hop.startsWith('127.') || hop === '::1')) break;
        }
        expect(proxies.clientIp(request({ 'x-forwarded-for': xff }))).toBe(expected);
      }),
      { numRuns: 80 },
    );
  });

  it('say https only when the right-most X-Forwarded-Proto entry is https', () => {
    const proxies = createProxyTrust(['loopback']);
    const proto = fc
      .tuple(hostile, fc.constantFrom('https', 'HTTPS', 'http', ''), run(' '), run('\t'))
      .map(([junk, last, a, b]) => `${junk},${a}${last}${b}`.slice(-MAX));
    fc.assert(
      fc.property(fc.oneof(hostile, proto), (xfp) => {
        const expected = refTrim(xfp.split(',').at(-1) ?? '').toLowerCase() === 'https';
        expect(proxies.isSecure(request({ 'x-forwarded-proto': xfp }))).toBe(expected);
      }),
      { numRuns: 80 },
    );
  });
});

describe('Forwarded of up to 64 KB', () => {
  /** One element as a proxy writes it, and the address the reference reads from it. */
  const element = fc.oneof(
    fc.ipV4().map((v4) => ({ text: `for=${v4}`, hop: normalizeIp(v4) })),
    fc.ipV6().map((v6) => ({ text: `for="[${v6}]:443";proto=https`, hop: normalizeIp(v6) })),
    fc.constant({ text: 'for=unknown', hop: undefined }),
    fc.constant({ text: 'for=_hidden;by=_proxy', hop: undefined }),
  );
  const list = fc
    .array(fc.tuple(element, ows, ows), { minLength: 1, maxLength: 12 })
    .filter((items) => items.reduce((n, [e, a, b]) => n + e.text.length + a.length + b.length + 1, 0) <= MAX);

  it('gives the client the reference walk over its for= entries gives, whatever the whitespace around the commas', () => {
    const proxies = createProxyTrust(() => true);
    fc.assert(
      fc.property(list, (items) => {
        const header = items.map(([e, a, b]) => `${a}${e.text}${b}`).join(',');
        const hops = items.map(([e]) => e.hop).reverse();
        expect(proxies.clientIp(request({ forwarded: header }))).toBe(refWalk(hops, () => true));
      }),
      { numRuns: 100 },
    );
  });

  it('never throws on arbitrary text, and gives either no client or a canonical address', () => {
    const proxies = createProxyTrust(() => true);
    const junk = fc.oneof(
      hostile,
      fc
        .array(fc.oneof(piece, fc.constantFrom('for=', ';', '"', '\\', '=')), { maxLength: 24 })
        .map((p) => p.join('').slice(0, MAX)),
    );
    fc.assert(
      fc.property(junk, (forwarded) => {
        const ip = proxies.clientIp(request({ forwarded }));
        if (ip !== undefined) expect(normalizeIp(ip)).toBe(ip);
        expect(typeof proxies.isSecure(request({ forwarded }))).toBe('boolean');
      }),
      { numRuns: 80 },
    );
  });
});

const keys = createKeyRing(['header-parsing-secret-long-enough-01']);
const contextOf = (headers: Record<string, string>, cookies: Record<string, string> = {}): ResolverContext => {
  const proxies = createProxyTrust();
  const view = request(headers, '198.51.100.7');
  return {
    header: view.header,
    cookies,
    clientIp: proxies.clientIp(view),
    secure: false,
    req: undefined,
    keys,
    now: () => 1_800_000_000_000,
    linkedVisitor: async () => undefined,
  };
};

describe('Cookie headers of up to 64 KB', () => {
  const resolver = cookieResolver();
  const signed = resolver.serialize('kX2q0b3YV8m1Jc9sZtQe4w', contextOf({})).split(';')[0]?.slice(5) as string;
  // Junk that cannot spell the cookie's name: no 'v', 's', 'i' or 'd'.
  const junk = fc
    .array(fc.oneof(fc.constantFrom(' ', '\t', ';', ',', '=', 'a', 'b', '%', 'a=b', '; c=%zz'), run(' '), run(';')), {
      maxLength: 16,
    })
    .map((parts) => parts.join('').slice(0, MAX / 2));

  /** The reference: the first `name=value` pair whose trimmed name is the cookie's, its value trimmed. */
  const refCookie = (header: string, name: string) => {
    for (const pair of header.split(';')) {
      const eq = pair.indexOf('=');
      if (eq !== -1 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1).trim();
    }
    return undefined;
  };

  it('find the visitor cookie among any others exactly when the reference parse does', async () => {
    const { parseCookie } = await import('cookie');
    fc.assert(
      fc.property(junk, junk, fc.boolean(), (before, after, present) => {
        const header = present ? `${before}; vsid=${signed}; ${after}` : `${before}; ${after}`;
        const expected = refCookie(header, 'vsid') === signed ? 'kX2q0b3YV8m1Jc9sZtQe4w' : undefined;
        const ctx = contextOf({ cookie: header }, parseCookie(header) as Record<string, string>);
        expect(resolver.read(ctx)?.id).toBe(expected);
        if (present) expect(expected).toBeDefined();
      }),
      { numRuns: 100 },
    );
  });
});

describe('User-Agent and the fingerprint headers of up to 64 KB', () => {
  const CHROME =
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';
  const tail = fc.oneof(hostile, run('('), run(';'), run('/'), run('a'), fc.string({ maxLength: 200 }));

  it('reduce a User-Agent as the reference does: its first 512 characters, three plain fields', () => {
    const reduce = createUaReducer();
    const reference = createUaReducer();
    fc.assert(
      fc.property(fc.constantFrom(CHROME, '', 'curl/8.5.0'), tail, (start, rest) => {
        const ua = `${start}${rest}`.slice(0, MAX);
        const reduced = reduce(ua);
        expect(reduced).toBe(reference(ua.slice(0, 512)));
        expect(reduced).toMatch(/^[^|\r\n]+\|[^|\r\n]+\|[^|\r\n]+$/);
      }),
      { numRuns: 60 },
    );
  });

  it('give one fingerprint to a header value and to the same value inside long runs of whitespace', () => {
    const fingerprint = fingerprintResolver({ headers: ['accept-language'] });
    const idOf = (headers: Record<string, string>) =>
      (fingerprint.resolve(contextOf(headers)) as { id: string } | undefined)?.id;
    const value = fc.oneof(fc.constantFrom('fr-FR,fr;q=0.9', 'en'), fc.string({ maxLength: 40 }), hostile);
    fc.assert(
      fc.property(value, ows, ows, tail, (lang, a, b, rest) => {
        const padded = `${a}${lang}${b}`;
        fc.pre(padded.length <= MAX);
        const ua = `${CHROME}${rest}`.slice(0, MAX);
        const plain = idOf({ 'user-agent': ua, 'accept-language': lang });
        expect(plain).toMatch(/^[A-Za-z0-9_-]{22}$/);
        expect(idOf({ 'user-agent': ua, 'accept-language': padded })).toBe(plain);
      }),
      { numRuns: 60 },
    );
  });
});
