import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyRing } from '../../src/crypto.js';
import { CookieError, type VisitorStateError } from '../../src/errors.js';
import { cookieStorage } from '../../src/state/cookie-storage.js';
import { createVisitorState, type VisitorState } from '../../src/visitor-state.js';
import { createCookieJar, createStrictCookieJar } from '../helpers/cookie-jar.js';

const SECRET = 'a-secret-for-the-strict-jar-tests-0123456789';
const DAY = 86_400_000;

const readBody = async (req: IncomingMessage): Promise<unknown> => {
  const parts: Buffer[] = [];
  for await (const part of req) parts.push(part as Buffer);
  return parts.length ? JSON.parse(Buffer.concat(parts).toString('utf8')) : undefined;
};

/**
 * A node:http application on visitor-state whose `ui:*` bins live in cookies: `POST /set` stores each
 * bin of a JSON object, `POST /delete?bins=a,b`, `POST /forget`, `GET /get?bins=a,b` answers the
 * bins as JSON.
 */
async function startApp(visitors: VisitorState, options: { maxHeaderSize?: number } = {}): Promise<string> {
  const server = createServer({ maxHeaderSize: options.maxHeaderSize }, (req, res) => {
    (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const names = (url.searchParams.get('bins') ?? '').split(',').filter(Boolean);
      const visitor = await visitors.resolve(req, res);
      const body = await readBody(req);
      if (url.pathname === '/set') {
        for (const [bin, data] of Object.entries(body as Record<string, unknown>)) await visitor.cache.set(bin, data);
      } else if (url.pathname === '/delete') {
        for (const bin of names) await visitor.cache.delete(bin);
      } else if (url.pathname === '/forget') {
        await visitor.forget();
      }
      const values = await visitor.cache.getMany(names);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(Object.fromEntries(names.map((name, i) => [name, values[i] ?? null]))));
    })().catch((error: unknown) => {
      res.statusCode = 500;
      res.end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('server has no port');
  return `http://127.0.0.1:${address.port}`;
}

const servers: Server[] = [];
const states: VisitorState[] = [];
const text = (chars: number) => randomBytes(chars).toString('base64url').slice(0, chars);
const chunksOf = (cookies: Record<string, string>) =>
  Object.fromEntries(Object.entries(cookies).filter(([name]) => name.startsWith('vs_data.')));
const chunkLines = (lines: readonly string[]) => lines.filter((line) => line.startsWith('vs_data.'));

let site: string;
const storage = cookieStorage();

beforeAll(async () => {
  const visitors = createVisitorState({
    secret: SECRET,
    bins: { 'ui:*': { store: storage } },
    ttl: '1d',
    onError: () => {},
  });
  states.push(visitors);
  site = await startApp(visitors);
});

afterAll(async () => {
  await Promise.all(states.map((state) => state.close()));
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

describe('cookie storage in a strict RFC 6265bis jar (tough-cookie, prefixSecurity strict)', () => {
  // Twelve bins of 260 characters: more than one cookie holds, within the 6 KiB budget.
  const names = Array.from({ length: 12 }, (_, i) => `ui:b${i}`);
  const state = Object.fromEntries(names.map((name) => [name, text(260)]));
  const query = `bins=${names.join(',')}`;

  it('re-sends only the chunk that holds a bin when that small bin changes', async () => {
    const jar = await createStrictCookieJar(site);
    const filled = await jar.request(`/set?${query}`, { json: state });
    expect(filled.json()).toEqual(state);
    const before = chunksOf(await jar.cookies());
    expect(Object.keys(before).length).toBeGreaterThanOrEqual(2);
    for (const line of filled.setCookies) expect(Buffer.byteLength(line)).toBeLessThan(4_096);

    const changed = { ...state, 'ui:b3': `${(state['ui:b3'] as string).slice(0, -5)}ABCDE` };
    const edit = await jar.request(`/set?${query}`, { json: { 'ui:b3': changed['ui:b3'] } });
    expect(edit.json()).toEqual(changed);
    const after = chunksOf(await jar.cookies());
    const rewritten = Object.keys(after).filter((name) => after[name] !== before[name]);
    expect(rewritten).toHaveLength(1);
    expect(chunkLines(edit.setCookies).map((line) => line.slice(0, line.indexOf('=')))).toEqual(rewritten);
    expect(Object.keys(after).sort()).toEqual(Object.keys(before).sort());

    expect((await jar.request(`/get?${query}`)).json()).toEqual(changed);
    expect(jar.refused).toEqual([]);
  });

  it('clears the chunks a smaller state no longer needs, and forget() clears them all', async () => {
    const jar = await createStrictCookieJar(site);
    await jar.request('/set', { json: state });
    expect(Object.keys(chunksOf(await jar.cookies())).length).toBeGreaterThanOrEqual(2);

    const shrunk = await jar.request(`/delete?bins=${names.slice(1).join(',')}`, { method: 'POST' });
    expect(chunkLines(shrunk.setCookies).some((line) => /^vs_data\.\d+=; Max-Age=0;/.test(line))).toBe(true);
    expect(Object.keys(chunksOf(await jar.cookies()))).toHaveLength(1);
    expect((await jar.request(`/get?${query}`)).json()).toEqual({
      ...Object.fromEntries(names.map((name) => [name, null])),
      'ui:b0': state['ui:b0'],
    });

    await jar.request('/set', { json: state });
    const forgotten = await jar.request(`/forget?${query}`, { method: 'POST' });
    expect(forgotten.json()).toEqual(Object.fromEntries(names.map((name) => [name, null])));
    expect(chunksOf(await jar.cookies())).toEqual({});
    expect(jar.refused).toEqual([]);
  });

  it('keeps the visitor cookie and every chunk within 6 KiB of Cookie header at the largest state it admits', async () => {
    const jar = await createStrictCookieJar(site);
    // Fill with 200-character bins until the store refuses one: that refusal is a CookieError.
    const held: Record<string, string> = {};
    for (let i = 0; ; i++) {
      const bin = `ui:fill:${i}`;
      const data = text(200);
      const res = await jar.request(`/set?bins=${bin}`, { json: { [bin]: data } });
      if (res.status !== 200) {
        expect(res.body).toMatch(/CookieError: bin 'ui:fill:\d+' would make the cookie state \d+ bytes, over the 6144/);
        break;
      }
      held[bin] = data;
    }
    const cookies = await jar.cookies();
    const header = Object.entries(cookies)
      .map(([name, value]) => `${name}=${value}`)
      .join('; ');
    expect(Object.keys(held).length).toBeGreaterThan(15);
    expect(Buffer.byteLength(header)).toBeLessThanOrEqual(6_144);
    expect((await jar.request(`/get?bins=${Object.keys(held).join(',')}`)).json()).toEqual(held);
    console.log(
      `largest default state: ${Object.keys(held).length} bins of 200 characters, ${Object.keys(chunksOf(cookies)).length} chunk cookies, Cookie header ${Buffer.byteLength(header)} bytes`,
    );
  });
});

describe('what the cookie storage reads and clears', () => {
  it('answers 700 junk chunk cookies with no more Set-Cookie lines than the store can write', async () => {
    const visitors = createVisitorState({
      secret: SECRET,
      bins: { 'ui:*': { store: cookieStorage() } },
      onError: () => {},
    });
    states.push(visitors);
    const big = await startApp(visitors, { maxHeaderSize: 65_536 });
    const jar = createCookieJar();
    for (let i = 0; i < 700; i++) jar.set(`vs_data.${i}`, text(24));
    const res = await jar.request(`${big}/set?bins=ui:a`, { json: { 'ui:a': 1 } });
    expect(res.json()).toEqual({ 'ui:a': 1 });
    const lines = chunkLines(res.setCookies);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThanOrEqual(storage.maxChunks);
    expect(storage.maxChunks).toBeLessThanOrEqual(3);
  });

  it('does not open a payload sealed for a cookie store of another name', async () => {
    const a = createVisitorState({
      secret: SECRET,
      bins: { 'ui:*': { store: cookieStorage({ name: 'vs_a' }) } },
      onError: () => {},
    });
    const b = createVisitorState({
      secret: SECRET,
      bins: { 'ui:*': { store: cookieStorage({ name: 'vs_b' }) } },
      onError: () => {},
    });
    states.push(a, b);
    const siteA = await startApp(a);
    const siteB = await startApp(b);
    const owner = createCookieJar();
    await owner.request(`${siteA}/set`, { json: { 'ui:theme': 'dark' } });
    const sealed = owner.cookies();
    const visitorCookie = sealed.vsid as string;

    const asB = createCookieJar();
    asB.set('vsid', visitorCookie);
    for (const [name, value] of Object.entries(sealed)) {
      if (name.startsWith('vs_a.')) asB.set(`vs_b.${name.slice(5)}`, value);
    }
    expect((await asB.request(`${siteB}/get?bins=ui:theme`)).json()).toEqual({ 'ui:theme': null });
    // The same cookies under their own name still read: the refusal above is the name's doing.
    expect((await owner.request(`${siteA}/get?bins=ui:theme`)).json()).toEqual({ 'ui:theme': 'dark' });
  });

  it('reads the single sealed payload of earlier versions as absent, and the next write clears it', async () => {
    const jar = createCookieJar();
    const first = await jar.request(`${site}/get?bins=ui:x`);
    expect(first.json()).toEqual({ 'ui:x': null });
    const id = (jar.get('vsid') as string).split('.')[0] as string;
    // Before chunks were sealed one by one: one payload `{v, b}` under the 'cookie-storage' key, cut in two.
    const old = createKeyRing([SECRET]).seal(
      'cookie-storage',
      JSON.stringify({ v: id, b: { 'ui:x': [text(3_000), Date.now() + DAY] } }),
    );
    jar.set('vs_data.0', old.slice(0, 3_000));
    jar.set('vs_data.1', old.slice(3_000));
    const read = await jar.request(`${site}/get?bins=ui:x`);
    expect(read.status).toBe(200);
    expect(read.json()).toEqual({ 'ui:x': null });

    const written = await jar.request(`${site}/set?bins=ui:y`, { json: { 'ui:y': 'fresh' } });
    expect(written.json()).toEqual({ 'ui:y': 'fresh' });
    expect(Object.keys(chunksOf(jar.cookies()))).toEqual(['vs_data.0']);
  });
});

describe('forget() leaves no chunk cookie in the browser', () => {
  const cleared = (lines: readonly string[]) =>
    chunkLines(lines)
      .filter((line) => /^vs_data\.\d+=; Max-Age=0;/.test(line))
      .map((line) => line.slice(0, line.indexOf('=')))
      .sort();

  it('clears the chunks of an earlier visitor ID of this browser, which the current visitor has no bin in', async () => {
    const jar = await createStrictCookieJar(site);
    await jar.request('/set', { json: { 'ui:theme': 'dark', 'ui:notes': text(3_000) } });
    const held = Object.keys(chunksOf(await jar.cookies())).sort();
    expect(held.length).toBeGreaterThanOrEqual(2);
    // The visitor cookie is lost (cleared by the user, expired): the browser comes back as a new visitor.
    await jar.set('vsid', 'lost');
    expect((await jar.request('/get?bins=ui:theme')).json()).toEqual({ 'ui:theme': null });
    expect(Object.keys(chunksOf(await jar.cookies())).sort()).toEqual(held);

    const forgotten = await jar.request('/forget', { method: 'POST' });
    expect(forgotten.status).toBe(200);
    expect(cleared(forgotten.setCookies)).toEqual(held);
    expect(chunksOf(await jar.cookies())).toEqual({});
    expect(jar.refused).toEqual([]);
  });

  it('clears a forged chunk and the chunks of an earlier version, which no bin is read from', async () => {
    const jar = await createStrictCookieJar(site);
    await jar.request('/get?bins=ui:x');
    const id = ((await jar.cookies()).vsid as string).split('.')[0] as string;
    // Before chunks were sealed one by one: one payload under the 'cookie-storage' key, cut in two.
    const old = createKeyRing([SECRET]).seal(
      'cookie-storage',
      JSON.stringify({ v: id, b: { 'ui:x': [text(3_000), Date.now() + DAY] } }),
    );
    await jar.set('vs_data.0', old.slice(0, 3_000));
    await jar.set('vs_data.1', old.slice(3_000));
    await jar.set('vs_data.2', text(40));
    expect((await jar.request('/get?bins=ui:x')).json()).toEqual({ 'ui:x': null });

    const forgotten = await jar.request('/forget', { method: 'POST' });
    expect(cleared(forgotten.setCookies)).toEqual(['vs_data.0', 'vs_data.1', 'vs_data.2']);
    expect(chunksOf(await jar.cookies())).toEqual({});
    expect(jar.refused).toEqual([]);
  });

  it("clears the visitor's own chunks, as before, and its bins read as absent after", async () => {
    const jar = await createStrictCookieJar(site);
    const bins = { 'ui:theme': 'dark', 'ui:notes': text(3_000) };
    await jar.request('/set', { json: bins });
    const held = Object.keys(chunksOf(await jar.cookies())).sort();
    expect(held.length).toBeGreaterThanOrEqual(2);

    const forgotten = await jar.request('/forget?bins=ui:theme,ui:notes', { method: 'POST' });
    expect(forgotten.json()).toEqual({ 'ui:theme': null, 'ui:notes': null });
    expect(cleared(forgotten.setCookies)).toEqual(held);
    expect(chunksOf(await jar.cookies())).toEqual({});
    expect((await jar.request('/get?bins=ui:theme,ui:notes')).json()).toEqual({ 'ui:theme': null, 'ui:notes': null });
    expect(jar.refused).toEqual([]);
  });
});

describe('a Secure cookie storage on a request over plain http', () => {
  const secureApp = async (options: Parameters<typeof cookieStorage>[0]) => {
    const reports: VisitorStateError[] = [];
    const visitors = createVisitorState({
      secret: SECRET,
      bins: { 'ui:*': { store: cookieStorage(options) } },
      trustProxy: 'loopback',
      onError: (error) => reports.push(error),
    });
    states.push(visitors);
    return { base: await startApp(visitors), reports };
  };

  it('reports once through onError that its chunks went out over plain http to a public host name, and not over https or to localhost', async () => {
    const { base, reports } = await secureApp({ secure: true });

    // localhost is a secure context, and https ended by a trusted proxy is https: the browser keeps the chunks.
    const local = await createStrictCookieJar(base, `http://localhost:${new URL(base).port}`);
    await local.request('/set', { json: { 'ui:theme': 'dark' } });
    expect((await local.request('/get?bins=ui:theme')).json()).toEqual({ 'ui:theme': 'dark' });
    const proxied = await createStrictCookieJar(base, 'https://shop.example');
    const viaTls = { headers: { 'x-forwarded-proto': 'https' } };
    await proxied.request('/set', { json: { 'ui:theme': 'light' }, ...viaTls });
    expect((await proxied.request('/get?bins=ui:theme', viaTls)).json()).toEqual({ 'ui:theme': 'light' });
    expect([...local.refused, ...proxied.refused]).toEqual([]);
    expect(reports).toEqual([]);

    // Plain http to a public host name: a strict jar drops every Secure chunk, so each bin set there is lost.
    const shop = await createStrictCookieJar(base, 'http://shop.example');
    for (const theme of ['dark', 'light', 'sepia']) {
      await shop.request('/set', { json: { 'ui:theme': theme } });
      expect((await shop.request('/get?bins=ui:theme')).json()).toEqual({ 'ui:theme': null });
    }
    expect(chunkLines(shop.refused.map((refusal) => refusal.line))).toHaveLength(3);
    expect(chunksOf(await shop.cookies())).toEqual({});

    expect(reports).toHaveLength(1);
    expect(reports[0]).toBeInstanceOf(CookieError);
    expect(reports[0]?.message).toBe(
      "the cookie storage's chunk cookies vs_data.N went out over plain http to a host other than localhost, and secure is true, so browsers drop them and every bin they carry is lost: " +
        "serve the site over HTTPS (behind a TLS proxy, name it in trustProxy so its X-Forwarded-Proto counts), or set secure: 'auto'. Reported once per store",
    );
  });

  it("names sameSite 'none' as what makes the chunks Secure", async () => {
    const { base, reports } = await secureApp({ sameSite: 'none' });
    const shop = await createStrictCookieJar(base, 'http://shop.example');
    await shop.request('/set', { json: { 'ui:theme': 'dark' } });
    await shop.request('/set', { json: { 'ui:theme': 'light' } });
    expect(reports.map((report) => report.message)).toEqual([
      expect.stringContaining(
        "and sameSite 'none' makes them Secure, so browsers drop them and every bin they carry is lost: serve the site over HTTPS (behind a TLS proxy, name it in trustProxy so its X-Forwarded-Proto counts), or use sameSite 'lax'. Reported once per store",
      ),
    ]);
  });
});
