import { parse as parseCookies } from 'cookie';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  authResolver,
  ConfigError,
  cookieResolver,
  createKeyRing,
  createVisitorState,
  fingerprintResolver,
  nodeRequestView,
  type Resolver,
  type VisitorStateError,
  type VisitorStateOptions,
} from '../../src/index.js';
import { cookiePair, send, serve, type TestServer } from '../helpers/http.js';

const SECRET = 'test-secret-that-is-long-enough-0001';
const OLD_SECRET = 'old-secret-that-is-long-enough-00001';
const CHROME_126 =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.126 Safari/537.36';

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/**
 * A real node:http app: it resolves the visitor on every request, treats an `x-test-user`
 * header as its own verified login, and serves /set?bin=&value= and /get?bin=.
 */
async function app(options: VisitorStateOptions = {}) {
  const errors: VisitorStateError[] = [];
  const visitors = createVisitorState({ secret: SECRET, onError: (e) => errors.push(e), ...options });
  const server = await serve(async (req, res) => {
    const visitor = await visitors.resolve(req, res);
    const url = new URL(req.url ?? '/', 'http://x');
    const bin = url.searchParams.get('bin');
    let value: unknown;
    if (url.pathname === '/set' && bin) await visitor.cache.set(bin, url.searchParams.get('value'));
    if (url.pathname === '/get' && bin) value = await visitor.cache.get(bin);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ id: visitor.id, source: visitor.source, confidence: visitor.confidence, value }));
  });
  servers.push(server);
  return { url: server.url, errors, visitors };
}

const loggedInAs = (req: unknown) => (req as { headers: Record<string, string | undefined> }).headers['x-test-user'];

describe('the visitor cookie', () => {
  it('mints a new visitor and sets a signed, HttpOnly, SameSite=Lax, long-lived cookie', async () => {
    const { url } = await app();
    const first = await send(url);
    const { id, source, confidence } = first.json();
    expect(source).toBe('new');
    expect(confidence).toBe('medium');
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(first.setCookies).toHaveLength(1);
    const line = first.setCookies[0] as string;
    expect(line).toMatch(/^vsid=[A-Za-z0-9_.-]+; Max-Age=34560000; Path=\/; HttpOnly; SameSite=Lax$/);
    expect(line).not.toMatch(/Secure/);
    expect(first.headers['cache-control']).toBe('private');
  });

  it('recognises a returning visitor and does not re-send the cookie', async () => {
    const { url } = await app();
    const first = await send(url);
    const cookie = cookiePair(first.setCookies, 'vsid') as string;
    const second = await send(url, { headers: { cookie } });
    expect(second.json()).toMatchObject({ id: first.json().id, source: 'cookie', confidence: 'high' });
    expect(second.setCookies).toEqual([]);
  });

  it('gives two clients two different IDs', async () => {
    const { url } = await app();
    const [a, b] = await Promise.all([send(url), send(url)]);
    expect(a.json().id).not.toBe(b.json().id);
  });

  it('keeps the visitor ID across login and logout', async () => {
    const { url } = await app({
      resolvers: [cookieResolver(), authResolver({ identify: loggedInAs })],
    });
    const anonymous = await send(url);
    const cookie = cookiePair(anonymous.setCookies, 'vsid') as string;
    const loggedIn = await send(url, { headers: { cookie, 'x-test-user': 'alice' } });
    const loggedOut = await send(url, { headers: { cookie } });
    expect(loggedIn.json()).toMatchObject({ id: anonymous.json().id, source: 'cookie' });
    expect(loggedOut.json()).toMatchObject({ id: anonymous.json().id, source: 'cookie' });
    expect([...loggedIn.setCookies, ...loggedOut.setCookies]).toEqual([]);
  });

  it('resolves a logged-in user on a new device to the same ID everywhere, and keeps it after logout', async () => {
    const { url } = await app({ resolvers: [cookieResolver(), authResolver({ identify: loggedInAs })] });
    const phone = await send(url, { headers: { 'x-test-user': 'alice' } });
    const laptop = await send(url, { headers: { 'x-test-user': 'alice' } });
    const bob = await send(url, { headers: { 'x-test-user': 'bob' } });
    expect(phone.json()).toMatchObject({ source: 'auth', confidence: 'high' });
    expect(laptop.json().id).toBe(phone.json().id);
    expect(bob.json().id).not.toBe(phone.json().id);
    expect(phone.json().id).not.toContain('alice');
    const cookie = cookiePair(phone.setCookies, 'vsid') as string;
    const afterLogout = await send(url, { headers: { cookie } });
    expect(afterLogout.json()).toMatchObject({ id: phone.json().id, source: 'cookie' });
  });

  it('never takes a raw Authorization header as an identity', async () => {
    const { url } = await app({ resolvers: [cookieResolver(), authResolver({ identify: loggedInAs })] });
    const basic = `Basic ${Buffer.from('alice:wrong').toString('base64')}`;
    const a = await send(url, { headers: { authorization: basic } });
    const b = await send(url, { headers: { authorization: basic } });
    expect(a.json().source).toBe('new');
    expect(a.json().id).not.toBe(b.json().id);
  });

  it('verifies a cookie signed with an older secret and sends it back re-signed', async () => {
    const before = await app({ secret: OLD_SECRET });
    const first = await send(before.url);
    const oldCookie = cookiePair(first.setCookies, 'vsid') as string;

    const rotated = await app({ secret: [SECRET, OLD_SECRET] });
    const second = await send(rotated.url, { headers: { cookie: oldCookie } });
    expect(second.json()).toMatchObject({ id: first.json().id, source: 'cookie' });
    const newCookie = cookiePair(second.setCookies, 'vsid') as string;
    expect(newCookie).toBeDefined();
    expect(newCookie).not.toBe(oldCookie);

    const newOnly = await app({ secret: SECRET });
    expect((await send(newOnly.url, { headers: { cookie: newCookie } })).json().id).toBe(first.json().id);
    expect((await send(newOnly.url, { headers: { cookie: oldCookie } })).json().id).not.toBe(first.json().id);
  });

  it('treats a forged, truncated or garbage cookie as absent and replaces it', async () => {
    const { url, errors } = await app();
    const first = await send(url);
    const cookie = cookiePair(first.setCookies, 'vsid') as string;
    const value = cookie.slice('vsid='.length);
    const [id, issued] = value.split('.');
    const forgedId = `${'A'.repeat(22)}.${issued}.${value.split('.')[2]}`;
    for (const bad of [
      value.slice(0, -1),
      `${value}x`,
      forgedId,
      'garbage',
      '',
      `${id}`,
      '%E0%A4%A',
      'x'.repeat(5000),
    ]) {
      const reply = await send(url, { headers: { cookie: `vsid=${bad}` } });
      expect(reply.status).toBe(200);
      expect(reply.json().source).toBe('new');
      expect(reply.json().id).not.toBe(first.json().id);
      expect(cookiePair(reply.setCookies, 'vsid')).toBeDefined();
    }
    expect(errors).toEqual([]);
  });

  it('tells apart visitors whose Cookie headers differ only in the visitor cookie, however often they come', async () => {
    const { url, errors } = await app();
    const visits = [await send(url), await send(url)].map((reply) => ({
      cookie: cookiePair(reply.setCookies, 'vsid') as string,
      id: reply.json().id as string,
    }));
    for (let round = 0; round < 3; round++) {
      for (const { cookie, id } of visits) {
        const reply = await send(url, { headers: { cookie: `${cookie}; theme=dark` } });
        expect(reply.json()).toMatchObject({ id, source: 'cookie' });
        // A header too long to be remembered is parsed each time, with the same answer.
        const long = await send(url, { headers: { cookie: `${cookie}; big=${'x'.repeat(600)}` } });
        expect(long.json()).toMatchObject({ id, source: 'cookie' });
      }
    }
    // The header just read again, with one character of the visitor cookie changed.
    const { cookie, id } = visits[0] as { cookie: string; id: string };
    const at = 'vsid='.length + 3;
    const forged = `${cookie.slice(0, at)}${cookie[at] === 'A' ? 'B' : 'A'}${cookie.slice(at + 1)}; theme=dark`;
    const reply = await send(url, { headers: { cookie: forged } });
    expect(reply.json().source).toBe('new');
    expect(reply.json().id).not.toBe(id);
    expect(errors).toEqual([]);
  });

  it('re-sends the cookie when it is due for refresh and forgets one past its lifetime', async () => {
    let clock = Date.UTC(2026, 0, 1);
    const { url } = await app({
      now: () => clock,
      resolvers: [cookieResolver({ refreshAfter: '1d', maxAge: '30d' })],
    });
    const first = await send(url);
    const cookie = cookiePair(first.setCookies, 'vsid') as string;
    clock += 2 * 86_400_000;
    const refreshed = await send(url, { headers: { cookie } });
    expect(refreshed.json().id).toBe(first.json().id);
    expect(cookiePair(refreshed.setCookies, 'vsid')).toBeDefined();
    clock += 40 * 86_400_000;
    expect((await send(url, { headers: { cookie } })).json().id).not.toBe(first.json().id);
  });

  it('marks the cookie Secure over HTTPS as told by a trusted proxy, not by anyone else', async () => {
    const trusting = await app({ trustProxy: 'loopback' });
    const viaProxy = await send(trusting.url, { headers: { 'x-forwarded-proto': 'https' } });
    expect(viaProxy.setCookies[0]).toMatch(/; Secure/);
    const untrusting = await app();
    const forged = await send(untrusting.url, { headers: { 'x-forwarded-proto': 'https' } });
    expect(forged.setCookies[0]).not.toMatch(/Secure/);
  });

  it('uses the __Host- prefix when asked, which implies Secure', async () => {
    const { url } = await app({ resolvers: [cookieResolver({ hostPrefix: true })] });
    const reply = await send(url);
    expect(reply.setCookies[0]).toMatch(/^__Host-vsid=.*; Path=\/; HttpOnly; Secure; SameSite=Lax$/);
  });
});

describe('the fingerprint resolver', () => {
  const fingerprinting = () => app({ trustProxy: 'loopback', resolvers: [cookieResolver(), fingerprintResolver()] });

  /** A cookie-less client that stores a bin, then comes back: the fingerprint's shared ID. */
  const sharedIdOf = async (url: string, headers: Record<string, string>) => {
    await send(`${url}/set?bin=demo:seen&value=yes`, { headers });
    return (await send(`${url}/get?bin=demo:seen`, { headers })).json().id as string;
  };

  it('recognises a client that keeps no cookies from its second request on, with what it stored', async () => {
    const { url } = await fingerprinting();
    const headers = { 'user-agent': CHROME_126, 'x-forwarded-for': '198.51.100.7' };
    const first = await send(`${url}/set?bin=demo:geo&value=Lyon`, { headers });
    expect(first.json()).toMatchObject({ source: 'new' });
    const second = await send(`${url}/get?bin=demo:geo`, { headers });
    expect(second.json()).toMatchObject({ source: 'fingerprint', confidence: 'low', value: 'Lyon' });
    const third = await send(`${url}/get?bin=demo:geo`, { headers });
    expect(third.json()).toMatchObject({ id: second.json().id, source: 'fingerprint', value: 'Lyon' });
  });

  it('never hands the fingerprint ID out in the visitor cookie', async () => {
    const { url } = await fingerprinting();
    const headers = { 'user-agent': CHROME_126, 'x-forwarded-for': '198.51.100.7' };
    const shared = await sharedIdOf(url, headers);
    const reply = await send(url, { headers });
    expect(reply.json()).toMatchObject({ id: shared, source: 'fingerprint' });
    const cookie = cookiePair(reply.setCookies, 'vsid') as string;
    expect(cookie).toBeDefined();
    const next = await send(url, { headers: { ...headers, cookie } });
    expect(next.json().source).toBe('cookie');
    expect(next.json().id).not.toBe(shared);
  });

  it('does not let an untrusted X-Forwarded-For move the fingerprint', async () => {
    const { url } = await app({ resolvers: [cookieResolver(), fingerprintResolver()] });
    const a = await sharedIdOf(url, { 'user-agent': CHROME_126, 'x-forwarded-for': '198.51.100.7' });
    const b = await send(url, { headers: { 'user-agent': CHROME_126, 'x-forwarded-for': '203.0.113.99' } });
    expect(b.json()).toMatchObject({ id: a, source: 'fingerprint' });
  });

  it('keeps the fingerprint across a Chrome minor update, and tells two IPv6 /64s apart', async () => {
    const { url } = await fingerprinting();
    const minor = CHROME_126.replace('6478.126', '6478.127');
    const at = (ua: string, ip: string) => send(url, { headers: { 'user-agent': ua, 'x-forwarded-for': ip } });
    const a = await sharedIdOf(url, { 'user-agent': CHROME_126, 'x-forwarded-for': '2001:db8:1:2::10' });
    expect((await at(minor, '2001:db8:1:2::10')).json().id).toBe(a);
    expect((await at(CHROME_126, '2001:db8:1:2:ffff::1')).json().id).toBe(a);
    expect((await at(CHROME_126, '2001:db8:1:3::10')).json()).toMatchObject({ source: 'new' });
  });

  it('keeps a cookie keeper and a cookie refuser behind one address apart from the second request on', async () => {
    const { url } = await fingerprinting();
    const headers = { 'user-agent': CHROME_126, 'x-forwarded-for': '198.51.100.7' };
    const keeper1 = await send(`${url}/set?bin=demo:geo&value=keeper`, { headers });
    const cookie = cookiePair(keeper1.setCookies, 'vsid') as string;
    await send(`${url}/set?bin=demo:geo&value=refuser`, { headers });
    const keeper2 = await send(`${url}/get?bin=demo:geo`, { headers: { ...headers, cookie } });
    const refuser2 = await send(`${url}/get?bin=demo:geo`, { headers });
    expect(keeper2.json()).toMatchObject({ source: 'cookie', value: 'keeper' });
    expect(refuser2.json()).toMatchObject({ source: 'fingerprint', value: 'refuser' });
    await send(`${url}/set?bin=demo:geo&value=refuser-again`, { headers });
    expect((await send(`${url}/get?bin=demo:geo`, { headers: { ...headers, cookie } })).json().value).toBe('keeper');
  });
});

describe('the first request behind a fingerprint', () => {
  const fingerprinting = () => app({ trustProxy: 'loopback', resolvers: [cookieResolver(), fingerprintResolver()] });
  const idInCookie = (setCookies: string[]) => cookiePair(setCookies, 'vsid')?.slice('vsid='.length).split('.')[0];

  it('gives a client that keeps cookies one ID from its first request on when its fingerprint holds no state', async () => {
    const { url } = await fingerprinting();
    const headers = { 'user-agent': CHROME_126, 'x-forwarded-for': '198.51.100.20' };
    const first = await send(`${url}/set?bin=demo:geo&value=Lyon`, { headers });
    expect(first.json()).toMatchObject({ source: 'new', confidence: 'medium' });
    expect(first.json().id).toBe(idInCookie(first.setCookies));
    const cookie = cookiePair(first.setCookies, 'vsid') as string;
    const second = await send(`${url}/get?bin=demo:geo`, { headers: { ...headers, cookie } });
    expect(second.json()).toMatchObject({ id: first.json().id, source: 'cookie', value: 'Lyon' });
  });

  it('lends a fingerprint that holds state to the first request, and the client keeps what that request stored', async () => {
    const { url } = await fingerprinting();
    const headers = { 'user-agent': CHROME_126, 'x-forwarded-for': '198.51.100.21' };
    await send(`${url}/set?bin=demo:household&value=shared`, { headers });
    const first = await send(`${url}/set?bin=demo:geo&value=mine`, { headers });
    expect(first.json()).toMatchObject({ source: 'fingerprint', confidence: 'low' });
    const own = idInCookie(first.setCookies);
    expect(own).toBeDefined();
    expect(own).not.toBe(first.json().id);
    const cookie = cookiePair(first.setCookies, 'vsid') as string;
    const second = await send(`${url}/get?bin=demo:geo`, { headers: { ...headers, cookie } });
    expect(second.json()).toMatchObject({ id: own, source: 'cookie', value: 'mine' });
  });

  it('does not fingerprint a request that sends Sec-GPC: 1, unless when says so', async () => {
    const { url } = await fingerprinting();
    const headers = { 'user-agent': CHROME_126, 'x-forwarded-for': '198.51.100.22' };
    const shared = await send(`${url}/set?bin=demo:geo&value=Lyon`, { headers }).then(() =>
      send(`${url}/get?bin=demo:geo`, { headers }),
    );
    expect(shared.json()).toMatchObject({ source: 'fingerprint', value: 'Lyon' });
    const gpc = await send(`${url}/get?bin=demo:geo`, { headers: { ...headers, 'sec-gpc': '1' } });
    expect(gpc.json()).toMatchObject({ source: 'new' });
    expect(gpc.json().value).toBeUndefined();

    const decided = await app({
      trustProxy: 'loopback',
      resolvers: [cookieResolver(), fingerprintResolver({ when: () => true })],
    });
    await send(`${decided.url}/set?bin=demo:geo&value=Oslo`, { headers });
    const allowed = await send(`${decided.url}/get?bin=demo:geo`, { headers: { ...headers, 'sec-gpc': '1' } });
    expect(allowed.json()).toMatchObject({ source: 'fingerprint', value: 'Oslo' });
  });
});

describe('the resolver chain', () => {
  it("accepts a custom resolver's short IDs of A-Z a-z 0-9 _ -, and keeps them in the cookie", async () => {
    const dev: Resolver = {
      name: 'dev',
      resolve: (ctx) => (ctx.header('x-dev-profile') === 'p1' ? { id: 'dev-p1', confidence: 'high' } : undefined),
    };
    const { url, errors } = await app({ resolvers: [cookieResolver(), dev] });
    const first = await send(`${url}/set?bin=demo:geo&value=Lyon`, { headers: { 'x-dev-profile': 'p1' } });
    expect(first.json()).toMatchObject({ id: 'dev-p1', source: 'dev' });
    const cookie = cookiePair(first.setCookies, 'vsid') as string;
    expect((await send(`${url}/get?bin=demo:geo`, { headers: { cookie } })).json()).toMatchObject({
      id: 'dev-p1',
      source: 'cookie',
      value: 'Lyon',
    });
    expect(errors).toEqual([]);
  });

  it('reports and skips a verified user that is neither a string nor a finite number', async () => {
    for (const bad of [{ id: 1 }, [1], Number.NaN, true, '']) {
      const { url, errors } = await app({
        resolvers: [cookieResolver(), authResolver({ identify: () => bad as never })],
      });
      const reply = await send(url);
      expect(reply.status).toBe(200);
      expect(reply.json().source).toBe('new');
      expect(errors).toHaveLength(1);
      expect(errors[0]?.cause).toMatchObject({ name: 'BinError', code: 'ERR_VISITOR_STATE_BIN' });
    }
  });

  it('reports a resolver that throws and goes on with the next', async () => {
    const broken: Resolver = {
      name: 'broken',
      resolve: () => {
        throw new Error('boom');
      },
    };
    const { url, errors } = await app({ resolvers: [broken, cookieResolver()] });
    const reply = await send(url);
    expect(reply.status).toBe(200);
    expect(reply.json().source).toBe('new');
    expect(errors.map((e) => e.code)).toEqual(['ERR_VISITOR_STATE_RESOLVER']);
    expect(errors[0]?.cause).toBeInstanceOf(Error);
  });

  it('places a custom resolver before a named one', async () => {
    const device: Resolver = {
      name: 'device',
      resolve: (ctx) => {
        const header = ctx.header('x-device-id');
        return header ? { id: ctx.keys.mac('device', header, 16), confidence: 'high' } : undefined;
      },
    };
    const { url, visitors } = await app();
    visitors.use(device, { before: 'cookie' });
    const a = await send(url, { headers: { 'x-device-id': 'phone-1' } });
    const b = await send(url, { headers: { 'x-device-id': 'phone-1' } });
    expect(a.json()).toMatchObject({ source: 'device', id: b.json().id });
    expect(() => visitors.use(device)).toThrow(ConfigError);
  });

  it('reports a resolver that returns an unusable ID', async () => {
    const sloppy: Resolver = { name: 'sloppy', resolve: () => ({ id: 'a:b', confidence: 'high' }) };
    const { url, errors } = await app({ resolvers: [cookieResolver(), sloppy] });
    expect((await send(url)).json().source).toBe('new');
    expect(errors[0]?.code).toBe('ERR_VISITOR_STATE_RESOLVER');
  });

  it('resolves a request once however often it is asked', async () => {
    const visitors = createVisitorState({ secret: SECRET });
    const server = await serve(async (req, res) => {
      const [a, b] = await Promise.all([visitors.resolve(req, res), visitors.resolve(req, res)]);
      res.end(JSON.stringify([a.id, b.id, a === b]));
    });
    servers.push(server);
    const reply = await send(server.url);
    const [a, b, same] = reply.json<[string, string, boolean]>();
    expect(a).toBe(b);
    expect(same).toBe(true);
    expect(reply.setCookies).toHaveLength(1);
  });
});

describe('the secret', () => {
  it('is required in production, and must be long there', () => {
    const env = process.env.NODE_ENV;
    const fromEnv = process.env.VISITOR_STATE_SECRET;
    try {
      process.env.NODE_ENV = 'production';
      delete process.env.VISITOR_STATE_SECRET;
      expect(() => createVisitorState()).toThrow(/VISITOR_STATE_SECRET/);
      expect(() => createVisitorState({ secret: 'short' })).toThrow(ConfigError);
      expect(() => createVisitorState({ secret: [SECRET, 'short'] })).toThrow(/at least 32 characters/);
      expect(createVisitorState({ secret: SECRET })).toBeDefined();
    } finally {
      process.env.NODE_ENV = env;
      if (fromEnv !== undefined) process.env.VISITOR_STATE_SECRET = fromEnv;
    }
  });
});

describe('properties', () => {
  const keys = createKeyRing([SECRET]);
  const resolver = cookieResolver();
  const now = Date.now();
  const ctxFor = (raw: string) => ({
    header: (name: string) => (name === 'cookie' ? `vsid=${raw}` : undefined),
    cookies: { vsid: raw },
    clientIp: undefined,
    secure: false,
    req: undefined,
    keys,
    now: () => now,
    linkedVisitor: async () => undefined,
  });
  const valid = resolver.serialize('kX2q0b3YV8m1Jc9sZtQe4w', ctxFor('')).split(';')[0]?.slice('vsid='.length) as string;

  it('accepts the valid cookie it signed', () => {
    expect(resolver.read(ctxFor(valid))?.id).toBe('kX2q0b3YV8m1Jc9sZtQe4w');
  });

  it('rejects every single-character change, truncation or extension of a signed cookie', () => {
    const mutation = fc.oneof(
      fc.record({
        kind: fc.constant('change' as const),
        at: fc.nat({ max: valid.length - 1 }),
        char: fc.integer({ min: 32, max: 126 }).map((c) => String.fromCharCode(c)),
      }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat({ max: valid.length - 1 }) }),
      fc.record({ kind: fc.constant('extend' as const), tail: fc.string({ minLength: 1, maxLength: 8 }) }),
    );
    fc.assert(
      fc.property(mutation, (m) => {
        const mutated =
          m.kind === 'change'
            ? valid.slice(0, m.at) + m.char + valid.slice(m.at + 1)
            : m.kind === 'truncate'
              ? valid.slice(0, m.at)
              : valid + m.tail;
        fc.pre(mutated !== valid);
        expect(resolver.read(ctxFor(mutated))).toBeUndefined();
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects every such change within a Cookie header it has already read, and reads the cookie among any others', () => {
    const ctxOf = (header: string) => ({ ...ctxFor(''), header: () => header, cookies: parseCookies(header) });
    const known = `vsid=${valid}; theme=dark`;
    expect(resolver.read(ctxOf(known))?.id).toBe('kX2q0b3YV8m1Jc9sZtQe4w');
    fc.assert(
      fc.property(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 33, max: 126 }), (at, code) => {
        const mutated = valid.slice(0, at) + String.fromCharCode(code) + valid.slice(at + 1);
        fc.pre(mutated !== valid && !/[;,\s"\\]/.test(String.fromCharCode(code)));
        expect(resolver.read(ctxOf(`vsid=${mutated}; theme=dark`))).toBeUndefined();
        expect(resolver.read(ctxOf(known))?.id).toBe('kX2q0b3YV8m1Jc9sZtQe4w');
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z]{1,8}=[A-Za-z0-9]{0,40}$/), (other) => {
        fc.pre(!other.startsWith('vsid='));
        expect(resolver.read(ctxOf(`${other}; vsid=${valid}`))?.id).toBe('kX2q0b3YV8m1Jc9sZtQe4w');
        expect(resolver.read(ctxOf(`vsid=${valid}; ${other}`))?.id).toBe('kX2q0b3YV8m1Jc9sZtQe4w');
      }),
      { numRuns: 500 },
    );
  });

  it('never throws while resolving arbitrary headers', async () => {
    const visitors = createVisitorState({
      secret: SECRET,
      trustProxy: ['loopback', 'private'],
      resolvers: [cookieResolver(), authResolver({ identify: () => undefined }), fingerprintResolver()],
      onError: (e) => {
        throw e;
      },
    });
    const header = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.ipV4(), fc.ipV6(), fc.constant(valid));
    await fc.assert(
      fc.asyncProperty(
        fc.record({ cookie: header, xff: header, forwarded: header, ua: header, proto: header, peer: header }),
        async (h) => {
          const req = {
            headers: {
              cookie: h.cookie,
              'x-forwarded-for': h.xff,
              forwarded: h.forwarded,
              'user-agent': h.ua,
              'x-forwarded-proto': h.proto,
            },
            socket: { remoteAddress: h.peer },
          };
          const visitor = await visitors.resolveView(nodeRequestView(req), undefined, {});
          expect(visitor.id).toMatch(/^[A-Za-z0-9_-]{8,128}$/);
        },
      ),
      { numRuns: 500 },
    );
  });
});
