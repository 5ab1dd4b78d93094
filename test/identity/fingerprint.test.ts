import { describe, expect, it } from 'vitest';
import { createKeyRing } from '../../src/crypto.js';
import { ConfigError } from '../../src/errors.js';
import type { RequestView } from '../../src/http.js';
import { createProxyTrust } from '../../src/identity/client-ip.js';
import { type FingerprintOptions, fingerprintResolver } from '../../src/identity/fingerprint.js';
import type { Identity, ResolverContext } from '../../src/identity/types.js';

const keys = createKeyRing(['x'.repeat(32)]);
const proxies = createProxyTrust();

const CHROME_126 =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.126 Safari/537.36';
const CHROME_126_UPDATED = CHROME_126.replace('126.0.6478.126', '126.0.6478.127');
const CHROME_127 = CHROME_126.replace('126.0.6478.126', '127.0.6533.72');
const FIREFOX = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0';

function context(peer: string, headers: Record<string, string> = {}): ResolverContext {
  const request: RequestView = { header: (name) => headers[name], peerAddress: peer, encrypted: false, raw: undefined };
  return {
    header: request.header,
    cookies: {},
    clientIp: proxies.clientIp(request),
    secure: proxies.isSecure(request),
    req: request.raw,
    keys,
    now: () => 0,
    linkedVisitor: async () => undefined,
  };
}

function identify(
  options: FingerprintOptions,
  peer: string,
  headers: Record<string, string> = {},
): Identity | undefined {
  const result = fingerprintResolver(options).resolve(context(peer, headers));
  if (result instanceof Promise) throw new Error('the fingerprint resolver answers synchronously');
  return result;
}

const id = (peer: string, ua = CHROME_126, options: FingerprintOptions = {}, headers: Record<string, string> = {}) =>
  identify(options, peer, { 'user-agent': ua, ...headers })?.id;

describe('fingerprintResolver', () => {
  it('is named fingerprint', () => {
    expect(fingerprintResolver().name).toBe('fingerprint');
  });

  it('gives a low-confidence ID that must not go into a cookie and lives at most the ttl', () => {
    const identity = identify({}, '203.0.113.9', { 'user-agent': CHROME_126 });
    expect(identity).toEqual({
      id: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/),
      confidence: 'low',
      persist: false,
      maxTtl: 86_400_000,
    });
    expect(identify({ ttl: '2h' }, '203.0.113.9', { 'user-agent': CHROME_126 })?.maxTtl).toBe(7_200_000);
  });

  it('gives the same ID for the same client on every request', () => {
    expect(id('203.0.113.9')).toBe(id('203.0.113.9'));
    expect(id('::ffff:203.0.113.9')).toBe(id('203.0.113.9'));
  });

  it('gives one ID to two IPv6 addresses in one /64 and two to different /64s', () => {
    expect(id('2001:db8:1:2::10')).toBe(id('2001:db8:1:2:aaaa:bbbb:cccc:dddd'));
    expect(id('2001:db8:1:2::10')).not.toBe(id('2001:db8:1:3::10'));
  });

  it('tells IPv4 addresses apart by default and groups them with a shorter prefix', () => {
    expect(id('203.0.113.9')).not.toBe(id('203.0.113.10'));
    expect(id('203.0.113.9', CHROME_126, { ipv4Prefix: 24 })).toBe(id('203.0.113.10', CHROME_126, { ipv4Prefix: 24 }));
    expect(id('203.0.113.9', CHROME_126, { ipv4Prefix: 24 })).not.toBe(
      id('203.0.114.9', CHROME_126, { ipv4Prefix: 24 }),
    );
  });

  it('keeps the ID across browser updates unless the major version is asked for', () => {
    expect(id('203.0.113.9', CHROME_126_UPDATED)).toBe(id('203.0.113.9', CHROME_126));
    expect(id('203.0.113.9', CHROME_127)).toBe(id('203.0.113.9', CHROME_126));
    const major = { majorVersion: true };
    expect(id('203.0.113.9', CHROME_126_UPDATED, major)).toBe(id('203.0.113.9', CHROME_126, major));
    expect(id('203.0.113.9', CHROME_127, major)).not.toBe(id('203.0.113.9', CHROME_126, major));
  });

  it('tells Chrome and Firefox apart', () => {
    expect(id('203.0.113.9', FIREFOX)).not.toBe(id('203.0.113.9', CHROME_126));
  });

  it('fingerprints clients without a User-Agent too', () => {
    expect(identify({}, '203.0.113.9')?.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it('changes the ID with the optional headers', () => {
    const options = { headers: ['accept-language', 'Sec-CH-UA-Platform'] };
    const english = id('203.0.113.9', CHROME_126, options, { 'accept-language': 'en-GB,en;q=0.9' });
    expect(id('203.0.113.9', CHROME_126, options, { 'accept-language': ' EN-GB,en;q=0.9 ' })).toBe(english);
    expect(id('203.0.113.9', CHROME_126, options, { 'accept-language': 'de-DE,de;q=0.9' })).not.toBe(english);
    expect(
      id('203.0.113.9', CHROME_126, options, {
        'accept-language': 'en-GB,en;q=0.9',
        'sec-ch-ua-platform': '"Windows"',
      }),
    ).not.toBe(english);
    expect(id('203.0.113.9', CHROME_126, {}, { 'accept-language': 'de-DE' })).toBe(id('203.0.113.9'));
  });

  it('does not fingerprint carrier-grade NAT addresses, or the configured shared ranges', () => {
    expect(identify({}, '100.64.12.34', { 'user-agent': CHROME_126 })).toBeUndefined();
    expect(identify({}, '100.127.255.1', { 'user-agent': CHROME_126 })).toBeUndefined();
    expect(identify({ sharedRanges: ['198.51.100.0/24'] }, '198.51.100.7')).toBeUndefined();
    expect(identify({ sharedRanges: [] }, '100.64.12.34')).toBeDefined();
  });

  it('does not fingerprint without consent', () => {
    expect(identify({ when: () => false }, '203.0.113.9', { 'user-agent': CHROME_126 })).toBeUndefined();
    expect(identify({ when: (ctx) => ctx.header('dnt') !== '1' }, '203.0.113.9', { dnt: '0' })).toBeDefined();
  });

  it('does not fingerprint a request that sends Sec-GPC: 1, unless when decides', () => {
    expect(id('198.51.100.7', CHROME_126, {}, { 'sec-gpc': '1' })).toBeUndefined();
    expect(id('198.51.100.7', CHROME_126, {}, { 'sec-gpc': ' 1 ' })).toBeUndefined();
    expect(id('198.51.100.7', CHROME_126, {}, { 'sec-gpc': '0' })).toBe(id('198.51.100.7'));
    expect(id('198.51.100.7', CHROME_126, { when: () => true }, { 'sec-gpc': '1' })).toBe(id('198.51.100.7'));
  });

  it('does not fingerprint a client whose address is unknown', () => {
    expect(identify({}, 'garbage', { 'user-agent': CHROME_126 })).toBeUndefined();
  });

  it('keeps neither the address nor the User-Agent text in the ID', () => {
    const fingerprint = id('203.0.113.9', CHROME_126) as string;
    expect(fingerprint).not.toContain('203');
    expect(fingerprint.toLowerCase()).not.toContain('chrome');
    expect(fingerprint).not.toBe(keys.mac('fingerprint', '203.0.113.9', 16));
  });

  it('derives the ID from the secret', () => {
    const other = createKeyRing(['y'.repeat(32)]);
    const ctx = { ...context('203.0.113.9', { 'user-agent': CHROME_126 }), keys: other };
    expect((fingerprintResolver().resolve(ctx) as Identity).id).not.toBe(id('203.0.113.9'));
  });

  it('remembers IDs per secret: one resolver serving two secrets keeps their IDs apart', () => {
    const resolver = fingerprintResolver();
    const other = createKeyRing(['y'.repeat(32)]);
    const ctx = context('203.0.113.9', { 'user-agent': CHROME_126 });
    const idOf = (c: ResolverContext) => (resolver.resolve(c) as Identity).id;
    const ours = idOf(ctx);
    const theirs = idOf({ ...ctx, keys: other });
    expect(theirs).not.toBe(ours);
    for (let i = 0; i < 3; i++) {
      expect(idOf(ctx)).toBe(ours);
      expect(idOf({ ...ctx, keys: other })).toBe(theirs);
    }
    // The remembered ID is the one a fresh resolver derives, and a neighbour still gets its own.
    expect(ours).toBe(id('203.0.113.9', CHROME_126));
    expect(idOf(context('203.0.113.10', { 'user-agent': CHROME_126 }))).not.toBe(ours);
  });

  it.each<[string, FingerprintOptions]>([
    ['an IPv4 prefix under 8', { ipv4Prefix: 4 }],
    ['an IPv4 prefix over 32', { ipv4Prefix: 33 }],
    ['an IPv6 prefix under 16', { ipv6Prefix: 8 }],
    ['a fractional IPv6 prefix', { ipv6Prefix: 64.5 }],
    ['a bad shared range', { sharedRanges: ['100.64.0.0/40'] }],
    ['a header name with a space', { headers: ['accept language'] }],
    ['a bad ttl', { ttl: 'forever' as never }],
    ['a UA cache of no entries', { uaCacheSize: 0 }],
  ])('rejects %s at construction with a ConfigError', (_what, options) => {
    expect(() => fingerprintResolver(options)).toThrow(ConfigError);
  });

  it('says how to fix a bad prefix', () => {
    expect(() => fingerprintResolver({ ipv6Prefix: 8 })).toThrow(
      'fingerprint ipv6Prefix must be a whole number from 16 to 128',
    );
  });
});
