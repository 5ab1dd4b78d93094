import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import type { RequestView } from '../../src/http.js';
import { createProxyTrust, normalizeIp, type TrustProxy } from '../../src/identity/client-ip.js';

function request(peer: string | undefined, headers: Record<string, string> = {}, encrypted = false): RequestView {
  return { header: (name) => headers[name], peerAddress: peer, encrypted, raw: undefined };
}

const clientIp = (trust: TrustProxy | undefined, peer: string | undefined, headers: Record<string, string> = {}) =>
  createProxyTrust(trust).clientIp(request(peer, headers));

const XFF = { 'x-forwarded-for': '203.0.113.9, 10.0.0.2' };

describe('createProxyTrust().clientIp', () => {
  it('ignores X-Forwarded-For and Forwarded when no proxy is trusted', () => {
    expect(clientIp(undefined, '127.0.0.1', XFF)).toBe('127.0.0.1');
    expect(clientIp(undefined, '127.0.0.1', { forwarded: 'for=203.0.113.9' })).toBe('127.0.0.1');
    expect(clientIp(0, '127.0.0.1', XFF)).toBe('127.0.0.1');
  });

  it('takes the right-most hop as the client when only loopback is trusted', () => {
    expect(clientIp('loopback', '127.0.0.1', XFF)).toBe('10.0.0.2');
    expect(clientIp(['loopback'], '::ffff:127.0.0.1', XFF)).toBe('10.0.0.2');
  });

  it('walks through trusted private proxies to the first untrusted address', () => {
    expect(clientIp(['loopback', 'private'], '127.0.0.1', XFF)).toBe('203.0.113.9');
    expect(clientIp('loopback, private', '127.0.0.1', XFF)).toBe('203.0.113.9');
    expect(clientIp(['loopback', '10.0.0.0/8'], '127.0.0.1', XFF)).toBe('203.0.113.9');
  });

  it('trusts as many hops as the number says, the peer being hop 0', () => {
    expect(clientIp(1, '127.0.0.1', XFF)).toBe('10.0.0.2');
    expect(clientIp(2, '127.0.0.1', XFF)).toBe('203.0.113.9');
  });

  it('returns the left-most entry when every hop is trusted', () => {
    expect(clientIp(5, '127.0.0.1', XFF)).toBe('203.0.113.9');
    expect(clientIp(['loopback', 'private'], '127.0.0.1', { 'x-forwarded-for': '10.1.1.1, 10.0.0.2' })).toBe(
      '10.1.1.1',
    );
    expect(clientIp('loopback', '127.0.0.1')).toBe('127.0.0.1');
  });

  it('never lets entries forged by the client win over the address the trusted proxy saw', () => {
    const forged = { 'x-forwarded-for': '10.0.0.1, 127.0.0.1, 198.51.100.7' };
    expect(clientIp(['loopback', 'private'], '127.0.0.1', forged)).toBe('198.51.100.7');
    expect(clientIp(['loopback', 'private'], '198.51.100.7', forged)).toBe('198.51.100.7');
  });

  it('asks a trust function about each normalised address with its hop number', () => {
    const seen: [string, number][] = [];
    const trust = (address: string, hop: number) => {
      seen.push([address, hop]);
      return address !== '2001:db8::9';
    };
    expect(clientIp(trust, '::ffff:10.0.0.1', { 'x-forwarded-for': '2001:DB8:0::9, [::1]:8080' })).toBe('2001:db8::9');
    expect(seen).toEqual([
      ['10.0.0.1', 0],
      ['::1', 1],
      ['2001:db8::9', 2],
    ]);
  });

  it('reads the for= entries of Forwarded when X-Forwarded-For is absent', () => {
    const forwarded = 'for=203.0.113.9;proto=http, for="[2001:db8::1]:4711";by=10.0.0.1';
    expect(clientIp('loopback', '127.0.0.1', { forwarded })).toBe('2001:db8::1');
    expect(clientIp(2, '127.0.0.1', { forwarded })).toBe('203.0.113.9');
    expect(clientIp(2, '127.0.0.1', { forwarded: 'For="192.0.2.60:80" , for=198.51.100.17' })).toBe('192.0.2.60');
  });

  it('prefers X-Forwarded-For over Forwarded', () => {
    expect(clientIp('loopback', '127.0.0.1', { 'x-forwarded-for': '198.51.100.7', forwarded: 'for=203.0.113.9' })).toBe(
      '198.51.100.7',
    );
  });

  it('gives an unknown client when the walk meets a malformed or hidden hop', () => {
    expect(clientIp('loopback', '127.0.0.1', { 'x-forwarded-for': '203.0.113.9, garbage' })).toBeUndefined();
    expect(clientIp(['loopback', 'private'], '127.0.0.1', { 'x-forwarded-for': 'garbage, 10.0.0.2' })).toBeUndefined();
    expect(clientIp(['loopback', 'private'], '127.0.0.1', { 'x-forwarded-for': ',10.0.0.2' })).toBeUndefined();
    expect(clientIp('loopback', '127.0.0.1', { 'x-forwarded-for': '127.1' })).toBeUndefined();
    expect(clientIp('loopback', '127.0.0.1', { forwarded: 'for=unknown' })).toBeUndefined();
    expect(clientIp('loopback', '127.0.0.1', { forwarded: 'for=_hidden' })).toBeUndefined();
    expect(clientIp('loopback', '127.0.0.1', { forwarded: 'proto=https' })).toBeUndefined();
    expect(clientIp('loopback', '127.0.0.1', { forwarded: 'for=2001:db8::1' })).toBeUndefined();
    expect(clientIp('loopback', '127.0.0.1', { forwarded: 'for="203.0.113.9' })).toBeUndefined();
    expect(clientIp('loopback', 'not an address')).toBeUndefined();
    expect(clientIp('loopback', undefined)).toBeUndefined();
  });

  it('stops before a malformed hop it does not need to read', () => {
    expect(clientIp('loopback', '127.0.0.1', { 'x-forwarded-for': 'garbage, 203.0.113.9' })).toBe('203.0.113.9');
    expect(clientIp(undefined, '203.0.113.9', { forwarded: 'for="broken' })).toBe('203.0.113.9');
  });

  it('unwraps IPv4-mapped IPv6 addresses', () => {
    expect(clientIp(undefined, '::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(clientIp('loopback', '127.0.0.1', { 'x-forwarded-for': '::ffff:192.0.2.1' })).toBe('192.0.2.1');
    expect(clientIp('::ffff:10.0.0.0/104', '10.9.9.9', { 'x-forwarded-for': '192.0.2.1' })).toBe('192.0.2.1');
  });
});

describe('createProxyTrust().isSecure', () => {
  const secure = (trust: TrustProxy | undefined, peer: string, headers: Record<string, string>, encrypted = false) =>
    createProxyTrust(trust).isSecure(request(peer, headers, encrypted));

  it('is secure over TLS to this server whatever the headers say', () => {
    expect(secure(undefined, '203.0.113.9', {}, true)).toBe(true);
    expect(secure('loopback', '127.0.0.1', { 'x-forwarded-proto': 'http' }, true)).toBe(true);
  });

  it('believes X-Forwarded-Proto and Forwarded proto only from a trusted peer', () => {
    expect(secure('loopback', '127.0.0.1', { 'x-forwarded-proto': 'https' })).toBe(true);
    expect(secure('loopback', '127.0.0.1', { 'x-forwarded-proto': 'HTTPS' })).toBe(true);
    expect(secure('loopback', '127.0.0.1', { forwarded: 'for=203.0.113.9;proto=https' })).toBe(true);
    expect(secure(undefined, '127.0.0.1', { 'x-forwarded-proto': 'https' })).toBe(false);
    expect(secure('loopback', '203.0.113.9', { 'x-forwarded-proto': 'https' })).toBe(false);
    expect(secure('loopback', '127.0.0.1', { 'x-forwarded-proto': 'http' })).toBe(false);
    expect(secure('loopback', '127.0.0.1', {})).toBe(false);
  });

  it('reads the proto the nearest proxy reported', () => {
    expect(secure('loopback', '127.0.0.1', { 'x-forwarded-proto': 'https, http' })).toBe(false);
    expect(secure('loopback', '127.0.0.1', { 'x-forwarded-proto': 'http, https' })).toBe(true);
  });
});

describe('trustProxy configuration', () => {
  it.each<[string, TrustProxy]>([
    ['a prefix that is too long', '10.0.0.0/33'],
    ['an IPv6 prefix that is too long', ['2001:db8::/129']],
    ['an unknown name', 'loopbak'],
    ['a legacy IPv4 form', ['127.1/8']],
    ['a zone ID', ['fe80::1%eth0']],
    ['a negative hop count', -1],
    ['a fractional hop count', 1.5],
  ])('rejects %s with a ConfigError', (_what, trust) => {
    expect(() => createProxyTrust(trust)).toThrow(ConfigError);
  });

  it('says how to fix a bad CIDR', () => {
    expect(() => createProxyTrust(['loopback', '10.0.0.0/33'])).toThrow(/"10\.0\.0\.0\/33".*'10\.0\.0\.0\/8'/);
  });

  it('trusts single addresses and IPv6 ranges', () => {
    expect(clientIp('192.0.2.10', '192.0.2.10', XFF)).toBe('10.0.0.2');
    expect(clientIp('192.0.2.10', '192.0.2.11', XFF)).toBe('192.0.2.11');
    expect(clientIp(['2001:db8::/32'], '2001:db8:1::5', XFF)).toBe('10.0.0.2');
  });
});

describe('normalizeIp', () => {
  it.each([
    ['192.0.2.1', '192.0.2.1'],
    ['192.0.2.1:8080', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['[::ffff:c000:201]:443', '192.0.2.1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['[2001:db8::1]', '2001:db8::1'],
    ['[2001:db8::1]:80', '2001:db8::1'],
    ['::1', '::1'],
    ['::ffff:1', '::ffff:1'],
    ['::FFFF:abcd', '::ffff:abcd'],
  ])('normalises %s to %s', (raw, expected) => {
    expect(normalizeIp(raw)).toBe(expected);
  });

  it.each([
    '',
    'unknown',
    '127.1',
    '0x7f.0.0.1',
    '010.0.0.1',
    '4294967295',
    '::ffff:0x7f.0.0.1',
    'fe80::1%eth0',
    '[fe80::1%25eth0]:80',
    '192.0.2.1:',
    '192.0.2.1:http',
    '[2001:db8::1',
    '[192.0.2.1]:80',
    '1.2.3.256',
    `${'0:'.repeat(40)}1`,
  ])('rejects %j', (raw) => {
    expect(normalizeIp(raw)).toBeUndefined();
  });

  const expanded = (address: string) =>
    (ipaddr.IPv6.parse(address).parts as number[]).map((part) => part.toString(16).padStart(4, '0')).join(':');

  it('is idempotent and unwraps every IPv4-mapped form of an IPv4 address', () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 0, max: 65535 }), (v4, port) => {
        expect(normalizeIp(v4)).toBe(v4);
        expect(normalizeIp(`${v4}:${port}`)).toBe(v4);
        expect(normalizeIp(`::ffff:${v4}`)).toBe(v4);
        expect(normalizeIp(`[::FFFF:${v4}]:${port}`)).toBe(v4);
        expect(normalizeIp(expanded(`::ffff:${v4}`))).toBe(v4);
      }),
    );
  });

  it('is idempotent and gives one form for the compressed, expanded and bracketed IPv6 spellings', () => {
    fc.assert(
      fc.property(fc.ipV6(), fc.integer({ min: 0, max: 65535 }), (v6, port) => {
        const normal = normalizeIp(v6);
        expect(normal).toBeDefined();
        expect(normalizeIp(normal as string)).toBe(normal);
        expect(normalizeIp(expanded(v6))).toBe(normal);
        expect(normalizeIp(expanded(v6).toUpperCase())).toBe(normal);
        expect(normalizeIp(`[${v6}]:${port}`)).toBe(normal);
      }),
    );
  });

  it('never throws and returns only canonical addresses for arbitrary headers and peers', () => {
    const text = fc.oneof(
      fc.string(),
      fc.ipV4(),
      fc.ipV6(),
      fc.ipV4Extended(),
      fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), fc.string()), { maxLength: 5 }).map((list) => list.join(',')),
      fc
        .array(
          fc.oneof(
            fc.ipV4(),
            fc.ipV6().map((v6) => `"[${v6}]:80"`),
            fc.string(),
          ),
          { maxLength: 5 },
        )
        .map((list) => list.map((node) => `for=${node};proto=https`).join(', ')),
    );
    const trusts = [undefined, 'loopback', ['0.0.0.0/0', '::/0'], 3, () => true].map((t) => createProxyTrust(t));
    fc.assert(
      fc.property(
        fc.option(text, { nil: undefined }),
        fc.option(text, { nil: undefined }),
        fc.option(text, { nil: undefined }),
        fc.option(text, { nil: undefined }),
        (peer, xff, forwarded, proto) => {
          const headers: Record<string, string> = {};
          if (xff !== undefined) headers['x-forwarded-for'] = xff;
          if (forwarded !== undefined) headers.forwarded = forwarded;
          if (proto !== undefined) headers['x-forwarded-proto'] = proto;
          for (const trust of trusts) {
            const ip = trust.clientIp(request(peer, headers));
            if (ip !== undefined) expect(normalizeIp(ip)).toBe(ip);
            expect(typeof trust.isSecure(request(peer, headers))).toBe('boolean');
          }
        },
      ),
    );
  });
});
