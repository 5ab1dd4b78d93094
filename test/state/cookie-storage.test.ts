import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, maxHeaderSize, type Server, type ServerResponse } from 'node:http';
import { parse } from 'cookie';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyRing, type KeyRing } from '../../src/crypto.js';
import { BinError, ConfigError, CookieError } from '../../src/errors.js';
import { nodeResponseView } from '../../src/http.js';
import { type CookieStorage, cookieStorage } from '../../src/state/cookie-storage.js';
import { createCookieJar } from '../helpers/cookie-jar.js';

const NEW_SECRET = 'the-current-secret-of-at-least-32-characters';
const OLD_SECRET = 'the-retired-secret-of-at-least-32-characters';
const DAY = 86_400_000;

interface Reply {
  data?: unknown;
  error?: { name: string; message: string };
  bins?: Record<string, unknown>;
}

const readBody = async (req: IncomingMessage): Promise<unknown> => {
  const parts: Buffer[] = [];
  for await (const part of req) parts.push(part as Buffer);
  return parts.length ? JSON.parse(Buffer.concat(parts).toString('utf8')) : undefined;
};

/**
 * A node:http server whose routes drive one storage: `GET /get/:bin`, `POST /set/:bin`
 * (JSON body, `?ttl=ms`), `POST /delete/:bin`, `POST /set-late/:bin` (after the headers
 * went out), `POST /clear`, `POST /clear-late`; `?visitor=` picks the visitor ID. Writing replies also list the bins after
 * the operation, as the same request sees them.
 */
async function startServer(storage: CookieStorage, keys: KeyRing): Promise<{ url: string; server: Server }> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<Reply> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const [, op, bin = ''] = url.pathname.split('/');
    const visitor = url.searchParams.get('visitor') ?? 'alice';
    const ttl = Number(url.searchParams.get('ttl') ?? DAY);
    const data = await readBody(req);
    const bins = storage.bind({
      cookies: parse(req.headers.cookie ?? ''),
      secure: false,
      response: nodeResponseView(res),
      keys,
      now: () => Date.now(),
    });
    const snapshot = async () => {
      const names = await bins.bins!(visitor);
      const values = await bins.getMany!(visitor, names);
      return Object.fromEntries(names.map((name, i) => [name, values[i]]));
    };
    try {
      if (op === 'get') return { data: await bins.get(visitor, bin) };
      if (op === 'set') await bins.set(visitor, bin, data, ttl);
      else if (op === 'delete') await bins.delete(visitor, bin);
      else if (op === 'clear') bins.clear();
      else if (op === 'clear-late') {
        res.writeHead(200, { 'content-type': 'application/json' });
        bins.clear();
      } else if (op === 'set-late') {
        res.writeHead(200, { 'content-type': 'application/json' });
        await bins.set(visitor, bin, data, ttl);
      } else if (op === 'batch') {
        // `[bin, data]` sets, `[bin]` deletes, in order, up to the first that the budget refuses.
        let done = 0;
        for (const [name, value] of data as [string, unknown?][]) {
          try {
            if (value === undefined) await bins.delete(visitor, name);
            else await bins.set(visitor, name, value, ttl);
          } catch (error) {
            if (!(error instanceof CookieError)) throw error;
            break;
          }
          done++;
        }
        return { data: done, bins: await snapshot() };
      } else if (op === 'script') {
        // Several calls in one request, each `[method, visitor, bin, data?]`; `update` adds `data` to a number.
        const results: unknown[] = [];
        for (const [method, id, name, arg] of data as [string, string, string, unknown][]) {
          if (method === 'set') results.push(await bins.set(id, name, arg, ttl));
          else if (method === 'get') results.push(await bins.get(id, name));
          else if (method === 'add') results.push(await bins.add!(id, name, arg, ttl));
          else if (method === 'entries') results.push((await bins.entries!(id)).map((e) => [e.bin, e.data]));
          else if (method === 'update') {
            results.push(
              await bins.update!(
                id,
                name,
                (n) => (arg === null ? undefined : ((n as number | undefined) ?? 0) + (arg as number)),
                ttl,
              ),
            );
          } else throw new Error(`no method ${method}`);
        }
        return { data: results };
      } else if (op !== 'bins') throw new Error(`no route ${op}`);
    } catch (error) {
      if (!(error instanceof CookieError || error instanceof BinError)) throw error;
      return { error: { name: error.name, message: error.message }, bins: await snapshot() };
    }
    return { bins: await snapshot() };
  };

  const server = createServer((req, res) => {
    handle(req, res).then(
      (reply) => {
        if (!res.headersSent) res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(reply));
      },
      (error: unknown) => {
        res.statusCode = 500;
        res.end(String(error));
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('server has no port');
  return { url: `http://127.0.0.1:${address.port}`, server };
}

const servers: Server[] = [];
const start = async (keys: KeyRing, storage = cookieStorage()) => {
  const { url, server } = await startServer(storage, keys);
  servers.push(server);
  return url;
};

let site: string;
let oldSite: string;
let newOnlySite: string;

beforeAll(async () => {
  site = await start(createKeyRing([NEW_SECRET, OLD_SECRET]));
  oldSite = await start(createKeyRing([OLD_SECRET]));
  newOnlySite = await start(createKeyRing([NEW_SECRET]));
});

afterAll(async () => {
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

const randomText = (chars: number) =>
  randomBytes(Math.ceil((chars * 3) / 4))
    .toString('base64url')
    .slice(0, chars);
const chunkNames = (cookies: Record<string, string>) => Object.keys(cookies).filter((n) => n.startsWith('vs_data.'));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('cookie storage through a real server', () => {
  it('reads on the next request what one request set, and nothing for another client', async () => {
    const jar = createCookieJar();
    const set = await jar.request(`${site}/set/geo`, { json: { city: 'Lyon' } });
    expect(set.status).toBe(200);
    expect(set.setCookies).toHaveLength(1);

    expect((await jar.request(`${site}/get/geo`)).json<Reply>().data).toEqual({ city: 'Lyon' });
    expect(jar.lastSetCookies).toEqual([]);

    const stranger = createCookieJar();
    expect((await stranger.request(`${site}/get/geo`)).json<Reply>().data).toBeUndefined();
  });

  it('keeps several bins, and delete removes one and then clears the cookie with the last', async () => {
    const jar = createCookieJar();
    await jar.request(`${site}/set/a`, { json: 1 });
    await jar.request(`${site}/set/b`, { json: [2] });
    expect((await jar.request(`${site}/bins`)).json<Reply>().bins).toEqual({ a: 1, b: [2] });

    await jar.request(`${site}/delete/a`, { method: 'POST' });
    expect((await jar.request(`${site}/get/a`)).json<Reply>().data).toBeUndefined();
    expect((await jar.request(`${site}/get/b`)).json<Reply>().data).toEqual([2]);

    const last = await jar.request(`${site}/delete/b`, { method: 'POST' });
    expect(last.setCookies).toEqual([expect.stringMatching(/^vs_data\.0=; Max-Age=0;/)]);
    expect(chunkNames(jar.cookies())).toEqual([]);
  });

  it('writes HttpOnly, SameSite=Lax cookies on / that live as long as the latest bin, at most 400 days', async () => {
    const jar = createCookieJar();
    await jar.request(`${site}/set/a?ttl=${DAY}`, { json: 'x' });
    expect(jar.lastSetCookies[0]).toMatch(/^vs_data\.0=[\w-]+; Max-Age=86400; Path=\/; HttpOnly; SameSite=Lax$/);

    await jar.request(`${site}/set/b?ttl=${1_000 * DAY}`, { json: 'y' });
    expect(jar.lastSetCookies[0]).toContain(`Max-Age=${400 * 86_400};`);
  });

  it('spreads a large value over several cookies under 4,096 bytes each, and clears the spare one when it shrinks', async () => {
    const jar = createCookieJar();
    const large = randomText(4_000);
    const set = await jar.request(`${site}/set/notes`, { json: large });
    expect(set.json<Reply>().error).toBeUndefined();
    expect(set.setCookies.length).toBeGreaterThanOrEqual(2);
    for (const line of set.setCookies) expect(Buffer.byteLength(line)).toBeLessThan(4_096);
    expect(chunkNames(jar.cookies()).sort()).toEqual(set.setCookies.map((_, i) => `vs_data.${i}`));

    expect((await jar.request(`${site}/get/notes`)).json<Reply>().data).toBe(large);

    const shrunk = await jar.request(`${site}/set/notes`, { json: 'short' });
    expect(shrunk.setCookies.filter((line) => /^vs_data\.1=; Max-Age=0;/.test(line))).toHaveLength(1);
    expect(chunkNames(jar.cookies())).toEqual(['vs_data.0']);
    expect((await jar.request(`${site}/get/notes`)).json<Reply>().data).toBe('short');
  });

  it('rejects a value past the budget with a CookieError and keeps the bins stored before', async () => {
    const jar = createCookieJar();
    await jar.request(`${site}/set/keep`, { json: 'me' });
    const tooBig = await jar.request(`${site}/set/huge`, { json: randomText(9_000) });
    const reply = tooBig.json<Reply>();
    expect(reply.error?.name).toBe('CookieError');
    expect(reply.error?.message).toMatch(
      /^bin 'huge' would make the cookie state \d+ bytes, over the 6144-byte budget; keep cookie bins small or raise maxBytes$/,
    );
    expect(reply.bins).toEqual({ keep: 'me' });
    expect(tooBig.setCookies).toEqual([]);

    expect((await jar.request(`${site}/bins`)).json<Reply>().bins).toEqual({ keep: 'me' });
  });

  it('sends no Set-Cookie when a set writes the same value again, or a delete finds nothing', async () => {
    const jar = createCookieJar();
    await jar.request(`${site}/set/choice`, { json: { size: 'M' } });
    expect(jar.lastSetCookies).toHaveLength(1);

    const again = await jar.request(`${site}/set/choice`, { json: { size: 'M' } });
    expect(again.status).toBe(200);
    expect(again.setCookies).toEqual([]);

    const absent = await jar.request(`${site}/delete/other`, { method: 'POST' });
    expect(absent.setCookies).toEqual([]);
  });

  it('reads a cookie sealed under an older secret and re-seals it under the current one at once', async () => {
    const jar = createCookieJar();
    await jar.request(`${oldSite}/set/lang`, { json: 'fr' });
    expect((await jar.request(`${newOnlySite}/get/lang`)).json<Reply>().data).toBeUndefined();

    const read = await jar.request(`${site}/get/lang`);
    expect(read.json<Reply>().data).toBe('fr');
    expect(read.setCookies).toHaveLength(1);

    expect((await jar.request(`${newOnlySite}/get/lang`)).json<Reply>().data).toBe('fr');
  });

  it('rejects a set after the response headers were sent, and stores nothing', async () => {
    const jar = createCookieJar();
    const late = await jar.request(`${site}/set-late/late`, { json: 1 });
    expect(late.json<Reply>().error).toEqual({
      name: 'CookieError',
      message: 'set after the response headers were sent: call set before writing the body',
    });
    expect(late.setCookies).toEqual([]);
    expect((await jar.request(`${site}/get/late`)).json<Reply>().data).toBeUndefined();
  });

  it('clears every chunk the request carries on clear(), whoever wrote it and whether it opens, and sends nothing when it carries none', async () => {
    const jar = createCookieJar();
    await jar.request(`${site}/set/notes?visitor=earlier`, { json: randomText(4_000) });
    expect(chunkNames(jar.cookies()).sort()).toEqual(['vs_data.0', 'vs_data.1']);
    jar.set('vs_data.2', randomText(40));

    const cleared = await jar.request(`${site}/clear?visitor=alice`, { method: 'POST' });
    expect(cleared.json<Reply>().bins).toEqual({});
    expect([...cleared.setCookies].sort()).toEqual([
      expect.stringMatching(/^vs_data\.0=; Max-Age=0;/),
      expect.stringMatching(/^vs_data\.1=; Max-Age=0;/),
      expect.stringMatching(/^vs_data\.2=; Max-Age=0;/),
    ]);
    expect(chunkNames(jar.cookies())).toEqual([]);
    expect((await jar.request(`${site}/get/notes?visitor=earlier`)).json<Reply>().data).toBeUndefined();

    expect((await jar.request(`${site}/clear`, { method: 'POST' })).setCookies).toEqual([]);
  });

  it('refuses to clear after the response headers were sent, and the chunks stay', async () => {
    const jar = createCookieJar();
    await jar.request(`${site}/set/keep`, { json: 'me' });
    const late = await jar.request(`${site}/clear-late`, { method: 'POST' });
    expect(late.json<Reply>().error).toEqual({
      name: 'CookieError',
      message:
        'the cookie storage cannot clear its cookies after the response headers were sent: call forget() before writing the body',
    });
    expect(late.setCookies).toEqual([]);
    expect((await jar.request(`${site}/get/keep`)).json<Reply>().data).toBe('me');
  });

  it('reads an expired bin as undefined and keeps the others', async () => {
    const jar = createCookieJar();
    await jar.request(`${site}/set/brief?ttl=50`, { json: 'soon gone' });
    await jar.request(`${site}/set/lasting`, { json: 'stays' });
    await sleep(120);
    expect((await jar.request(`${site}/get/brief`)).json<Reply>().data).toBeUndefined();
    expect((await jar.request(`${site}/bins`)).json<Reply>().bins).toEqual({ lasting: 'stays' });
  });

  it("does not hand one visitor ID's bins to another, and a set for the new ID starts afresh", async () => {
    const jar = createCookieJar();
    await jar.request(`${site}/set/cart?visitor=alice`, { json: ['tea'] });
    expect((await jar.request(`${site}/get/cart?visitor=bob`)).json<Reply>().data).toBeUndefined();

    expect((await jar.request(`${site}/set/theme?visitor=bob`, { json: 'dark' })).json<Reply>().bins).toEqual({
      theme: 'dark',
    });
    expect((await jar.request(`${site}/get/cart?visitor=alice`)).json<Reply>().data).toBeUndefined();
  });

  it('reads as empty when a chunk is missing, and the next set replaces every chunk', async () => {
    const jar = createCookieJar();
    await jar.request(`${site}/set/notes`, { json: randomText(4_000) });
    jar.delete('vs_data.0');
    expect((await jar.request(`${site}/get/notes`)).json<Reply>().data).toBeUndefined();

    const fresh = await jar.request(`${site}/set/small`, { json: 1 });
    expect(fresh.json<Reply>().bins).toEqual({ small: 1 });
    expect(chunkNames(jar.cookies())).toEqual(['vs_data.0']);
  });
});

describe('several visitor IDs and calls in one request', () => {
  it('keeps every bin written in one request, under one ID or two in turn', async () => {
    const jar = createCookieJar();
    const script = [
      ['set', 'shared', 'ui:a', 1],
      ['set', 'own', 'ui:a', 1],
      ['set', 'shared', 'ui:b', 2],
      ['set', 'own', 'ui:b', 2],
    ];
    await jar.request(`${site}/script`, { json: script });
    expect((await jar.request(`${site}/bins?visitor=own`)).json<Reply>().bins).toEqual({ 'ui:a': 1, 'ui:b': 2 });
    expect((await jar.request(`${site}/bins?visitor=shared`)).json<Reply>().bins).toEqual({ 'ui:a': 1, 'ui:b': 2 });

    // A later request that writes under one ID drops the bins of the IDs it does not write under.
    await jar.request(`${site}/set/ui:c?visitor=own`, { json: 3 });
    expect((await jar.request(`${site}/bins?visitor=own`)).json<Reply>().bins).toEqual({
      'ui:a': 1,
      'ui:b': 2,
      'ui:c': 3,
    });
    expect((await jar.request(`${site}/bins?visitor=shared`)).json<Reply>().bins).toEqual({});
  });

  it('updates, adds and lists within the request, and the next request reads the outcome', async () => {
    const jar = createCookieJar();
    const script = [
      ['update', 'alice', 'visits', 1],
      ['update', 'alice', 'visits', 1],
      ['add', 'alice', 'first', 'x'],
      ['add', 'alice', 'first', 'y'],
      ['update', 'alice', 'gone', 5],
      ['update', 'alice', 'gone', null],
      ['entries', 'alice', ''],
    ];
    const reply = (await jar.request(`${site}/script`, { json: script })).json<Reply>();
    expect(reply.data).toEqual(
      [
        1,
        2,
        true,
        false,
        5,
        undefined,
        [
          ['visits', 2],
          ['first', 'x'],
        ],
      ].map((v) => v ?? null),
    );
    expect(jar.lastSetCookies).toHaveLength(1);
    const next = (await jar.request(`${site}/script`, { json: [['update', 'alice', 'visits', 1]] })).json<Reply>();
    expect(next.data).toEqual([3]);
  });
});

describe('the chunk layout under any sequence of writes', () => {
  const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
  const op = fc.oneof(
    fc.tuple(fc.constantFrom(...names), fc.integer({ min: 1, max: 1_500 })),
    fc.tuple(fc.constantFrom(...names)),
  );

  it('reads back what was written, keeps every line under 4,096 bytes and the chunks within the budget', async () => {
    const storage = cookieStorage();
    const budgetSite = await start(createKeyRing([NEW_SECRET]), storage);
    const property = fc.asyncProperty(
      fc.array(fc.array(op, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 6 }),
      async (requests) => {
        const jar = createCookieJar();
        const model: Record<string, unknown> = {};
        for (const ops of requests) {
          const batch = ops.map(([name, length]) => (length === undefined ? [name] : [name, randomText(length)]));
          const res = await jar.request(`${budgetSite}/batch`, { json: batch });
          expect(res.status).toBe(200);
          const reply = res.json<Reply>();
          for (const [name, value] of batch.slice(0, reply.data as number)) {
            if (value === undefined) delete model[name as string];
            else model[name as string] = value;
          }
          // Only a set is refused, and only one that would pass the budget.
          if ((reply.data as number) < batch.length) expect(batch[reply.data as number]).toHaveLength(2);
          expect(reply.bins).toEqual(model);
          for (const line of res.setCookies) expect(Buffer.byteLength(line)).toBeLessThan(4_096);
          const chunks = Object.entries(jar.cookies()).filter(([name]) => name.startsWith('vs_data.'));
          expect(chunks.length).toBeLessThanOrEqual(storage.maxChunks);
          const bytes = chunks.reduce((sum, [name, value]) => sum + name.length + 1 + value.length + 2, 0);
          expect(bytes).toBeLessThanOrEqual(storage.maxBytes - 256);
        }
        expect((await jar.request(`${budgetSite}/bins`)).json<Reply>().bins).toEqual(model);
      },
    );
    await fc.assert(property, { numRuns: 60 });
  }, 120_000);
});

describe('a tampered cookie', () => {
  const alphabet = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~!*%'];
  // Positions near the end are drawn often: the last base64url character carries spare bits.
  const position = fc.oneof(fc.nat(), fc.integer({ min: -3, max: -1 }));
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('replace' as const), at: position, char: fc.constantFrom(...alphabet) }),
    fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
    fc.record({
      kind: fc.constant('extend' as const),
      extra: fc.string({ unit: fc.constantFrom(...alphabet), minLength: 1, maxLength: 3 }),
    }),
  );
  type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

  const mutate = (value: string, m: Mutation): string => {
    if (m.kind === 'truncate') return value.slice(0, m.keep % value.length);
    if (m.kind === 'extend') return value + m.extra;
    const at = (value.length + (m.at % value.length)) % value.length;
    const char = m.char === value[at] ? alphabet[(alphabet.indexOf(m.char) + 1) % alphabet.length] : m.char;
    return value.slice(0, at) + char + value.slice(at + 1);
  };

  it.each([
    ['one chunk', randomText(20)],
    ['one of several chunks', randomText(4_000)],
  ])(
    'reads as undefined, without throwing, after any single-character change, truncation or extension of %s',
    async (_, base) => {
      // The padding length varies so that every length of the sealed text modulo 4 is tried.
      const property = fc.asyncProperty(fc.nat(2), fc.nat(), mutation, async (pad, pick, m) => {
        const value = base + 'x'.repeat(pad);
        const owner = createCookieJar();
        await owner.request(`${site}/set/secret`, { json: value });
        const chunks = Object.entries(owner.cookies()).filter(([name]) => name.startsWith('vs_data.'));
        expect(chunks.length > 1).toBe(base.length > 3_000);
        const [target, original] = chunks[pick % chunks.length]!;
        const jar = createCookieJar();
        for (const [name, chunk] of chunks) jar.set(name, name === target ? mutate(original, m) : chunk);
        const res = await jar.request(`${site}/get/secret`);
        expect(res.status).toBe(200);
        expect(res.json<Reply>().data).toBeUndefined();
      });
      await fc.assert(property, { numRuns: 200 });
      // The same request without the mutation reads the value: the property is not vacuous.
      const owner = createCookieJar();
      await owner.request(`${site}/set/secret`, { json: base });
      expect((await owner.request(`${site}/get/secret`)).json<Reply>().data).toBe(base);
    },
  );
});

describe('the budget, checked at construction', () => {
  it("refuses a budget that would not fit Node's default 16 KiB of request headers, and says how to raise it", () => {
    expect(maxHeaderSize).toBe(16_384);
    let refused: unknown;
    try {
      cookieStorage({ maxBytes: 16_384 });
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as Error).message).toBe(
      "cookie storage maxBytes 16384 does not fit node:http's maxHeaderSize of 16384 bytes with 4096 bytes left for the request line and the browser's other headers: " +
        'lower maxBytes to at most 12288, or raise the limit to at least 20480 (node --max-http-header-size=20480, or http.createServer({ maxHeaderSize: 20480 }) passed as cookieStorage({ server }))',
    );
    expect(cookieStorage({ maxBytes: 12_288 }).maxBytes).toBe(12_288);
  });

  it('measures a budget against the server it is given', () => {
    const roomy = createServer({ maxHeaderSize: 32_768 });
    expect(cookieStorage({ maxBytes: 16_384, server: roomy }).maxBytes).toBe(16_384);
    expect(() => cookieStorage({ maxBytes: 6_144, server: { maxHeaderSize: 8_192 } })).toThrow(
      /maxBytes 6144 does not fit the server's maxHeaderSize of 8192 bytes/,
    );
  });

  it('defaults to 6 KiB, and clears at most the chunks that budget can fill', () => {
    const storage = cookieStorage();
    expect(storage.maxBytes).toBe(6_144);
    expect(storage.maxChunks).toBe(3);
  });
});

describe('cookie storage bound without HTTP', () => {
  const keys = createKeyRing([NEW_SECRET]);

  it('rejects a write when it has no response to write to, and keeps what it read', async () => {
    const storage = cookieStorage().bind({ cookies: {}, secure: false, response: undefined, keys, now: Date.now });
    await expect(storage.set('alice', 'a', 1, DAY)).rejects.toBeInstanceOf(CookieError);
    expect(await storage.get('alice', 'a')).toBeUndefined();
  });

  it('rejects data that JSON cannot carry with a BinError', async () => {
    const storage = cookieStorage().bind({ cookies: {}, secure: false, response: undefined, keys, now: Date.now });
    await expect(storage.set('alice', 'a', { n: 1n }, DAY)).rejects.toBeInstanceOf(BinError);
  });
});
