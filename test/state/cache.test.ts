import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import {
  type BinCache,
  BinError,
  bin,
  ConfigError,
  createVisitorState,
  memoryStorage,
  registerStorage,
  type Storage,
  StorageError,
  type Visitor,
  type VisitorStateError,
  type VisitorStateOptions,
} from '../../src/index.js';
import { type CookieJar, createCookieJar } from '../helpers/cookie-jar.js';
import { send, serve } from '../helpers/http.js';
import { freePort } from '../helpers/services.js';

const SECRET = 'cache-test-secret-0123456789abcdefghij';
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const dir = await mkdtemp(join(tmpdir(), 'visitor-state-cache-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

interface Call {
  readonly op: 'get' | 'getMany' | 'set' | 'delete' | 'add' | 'bins';
  readonly visitorId: string;
  readonly bins: readonly string[];
  readonly ttlMs?: number;
}

/** A storage that records every call it gets, over a real one. */
function counting(inner: Storage = memoryStorage()) {
  const calls: Call[] = [];
  const storage: Storage = {
    get(visitorId, name) {
      calls.push({ op: 'get', visitorId, bins: [name] });
      return inner.get(visitorId, name);
    },
    async getMany(visitorId, names) {
      calls.push({ op: 'getMany', visitorId, bins: names });
      return Promise.all(names.map((name) => inner.get(visitorId, name)));
    },
    set(visitorId, name, data, ttlMs) {
      calls.push({ op: 'set', visitorId, bins: [name], ttlMs });
      return inner.set(visitorId, name, data, ttlMs);
    },
    delete(visitorId, name) {
      calls.push({ op: 'delete', visitorId, bins: [name] });
      return inner.delete(visitorId, name);
    },
  };
  /** The calls made while `run` ran. */
  const during = async (run: () => Promise<unknown>): Promise<Call[]> => {
    const before = calls.length;
    await run();
    return calls.slice(before);
  };
  return { storage, inner, calls, during };
}

type Handler = (visitor: Visitor, url: URL, body: unknown) => Promise<unknown>;

const readBody = async (req: IncomingMessage): Promise<unknown> => {
  const parts: Buffer[] = [];
  for await (const part of req) parts.push(part as Buffer);
  const text = Buffer.concat(parts).toString('utf8');
  return text === '' ? undefined : JSON.parse(text);
};

/** The bin named by `?bin=`, with `?ttl=` as a number when it looks like one. */
const binOf = (url: URL) => url.searchParams.get('bin') ?? '';
const ttlOf = (url: URL) => {
  const ttl = url.searchParams.get('ttl');
  if (ttl === null) return {};
  return { ttl: (/^-?\d+(\.\d+)?$/.test(ttl) ? Number(ttl) : ttl) as never };
};

/** /get, /set (JSON body), /delete of `?bin=`; anything else goes to `more`. */
const basic =
  (more?: Handler): Handler =>
  async (visitor, url, body) => {
    const { cache } = visitor;
    switch (url.pathname) {
      case '/get':
        return { id: visitor.id, value: await cache.get(binOf(url)) };
      case '/set':
        await cache.set(binOf(url), body, ttlOf(url));
        return { id: visitor.id, stored: true };
      case '/delete':
        await cache.delete(binOf(url));
        return { id: visitor.id, deleted: true };
      default:
        if (more) return more(visitor, url, body);
        return { id: visitor.id };
    }
  };

interface App {
  readonly url: string;
  readonly errors: VisitorStateError[];
  /** `${url}${path}`. */
  at(path: string): string;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/**
 * A real node:http app over `createVisitorState(options)`. The app catches visitor-state's
 * errors as a careful application would, and answers 400 with their name and message
 * instead of a 500.
 */
async function startApp(options: VisitorStateOptions, handle: Handler = basic()): Promise<App> {
  const errors: VisitorStateError[] = [];
  const visitors = createVisitorState({ secret: SECRET, onError: (error) => errors.push(error), ...options });
  const server = await serve(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://app');
    const body = await readBody(req);
    if (url.searchParams.has('own-cache-control'))
      res.setHeader('cache-control', url.searchParams.get('own-cache-control') as string);
    if (url.searchParams.has('own-vary')) res.setHeader('vary', url.searchParams.get('own-vary') as string);
    const visitor = await visitors.resolve(req, res);
    let status = 200;
    let reply: unknown;
    try {
      reply = await handle(visitor, url, body);
    } catch (error) {
      if (!(error instanceof BinError || error instanceof ConfigError || error instanceof StorageError)) throw error;
      status = 400;
      reply = { error: error.name, message: error.message };
    }
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(reply ?? null));
  });
  closers.push(async () => {
    await server.close();
    await visitors.close();
  });
  return { url: server.url, errors, at: (path) => `${server.url}${path}` };
}

interface Reply {
  readonly id?: string;
  readonly value?: unknown;
  readonly error?: string;
  readonly message?: string;
}

const getBin = async (jar: CookieJar, app: App, name: string) =>
  (await jar.request(app.at(`/get?bin=${encodeURIComponent(name)}`))).json<Reply>();
const setBin = async (jar: CookieJar, app: App, name: string, value: unknown, ttl?: string | number) =>
  jar.request(app.at(`/set?bin=${encodeURIComponent(name)}${ttl === undefined ? '' : `&ttl=${ttl}`}`), {
    json: value,
  });

describe('bins across requests', () => {
  it('reads on the next request what a request set', async () => {
    const app = await startApp({});
    const jar = createCookieJar();
    expect((await setBin(jar, app, 'mymod:geo', { city: 'Lyon', zip: '69001' })).status).toBe(200);
    expect((await getBin(jar, app, 'mymod:geo')).value).toEqual({ city: 'Lyon', zip: '69001' });
  });

  it('keeps the bins of two visitors with one bin name apart', async () => {
    const app = await startApp({});
    const alice = createCookieJar();
    const bob = createCookieJar();
    await setBin(alice, app, 'mymod:geo', 'Lyon');
    await setBin(bob, app, 'mymod:geo', 'Oslo');
    expect((await getBin(alice, app, 'mymod:geo')).value).toBe('Lyon');
    expect((await getBin(bob, app, 'mymod:geo')).value).toBe('Oslo');
    expect((await send(app.at('/get?bin=mymod:geo'))).json()).not.toHaveProperty('value');
  });

  it('forgets a deleted bin', async () => {
    const app = await startApp({});
    const jar = createCookieJar();
    await setBin(jar, app, 'mymod:geo', 'Lyon');
    await jar.request(app.at('/delete?bin=mymod:geo'));
    expect(await getBin(jar, app, 'mymod:geo')).not.toHaveProperty('value');
  });
});

describe('bad input', () => {
  const badValues: Record<string, { make: () => unknown; says: RegExp }> = {
    function: { make: () => () => 1, says: /a function is not data/ },
    BigInt: { make: () => ({ big: 10n }), says: /a bigint is not data/ },
    NaN: { make: () => [1, Number.NaN], says: /NaN is not a finite number/ },
    cycle: {
      make: () => {
        const node: Record<string, unknown> = { name: 'loop' };
        node.self = { back: node };
        return node;
      },
      says: /cycle/,
    },
    Date: { make: () => ({ when: new Date(0) }), says: /a Date is not plain data/ },
    Map: { make: () => new Map([['a', 1]]), says: /a Map is not plain data/ },
  };

  const app = () =>
    startApp(
      {},
      basic(async (visitor, url) => {
        if (url.pathname !== '/bad') return undefined;
        const value = badValues[url.searchParams.get('kind') ?? '']?.make();
        const refused = await visitor.cache.set('mymod:geo', value).catch((error: unknown) => error);
        // Nothing lost, even within the request that failed.
        if ((await visitor.cache.get('mymod:geo')) === undefined) throw new Error('the earlier value was lost');
        if (refused !== undefined) throw refused;
        return undefined;
      }),
    );

  it.each(Object.entries(badValues))(
    'refuses a %s with a BinError that says what to store, losing nothing',
    async (_kind, bad) => {
      const started = await app();
      const jar = createCookieJar();
      await setBin(jar, started, 'mymod:geo', { city: 'Lyon' });
      const refused = await jar.request(started.at(`/bad?kind=${_kind}`));
      expect(refused.status).toBe(400);
      const reply = refused.json<Reply>();
      expect(reply.error).toBe('BinError');
      expect(reply.message).toMatch(bad.says);
      expect(reply.message).toMatch(/store plain objects, arrays, strings, finite numbers, booleans or null/);
      expect((await getBin(jar, started, 'mymod:geo')).value).toEqual({ city: 'Lyon' });
    },
  );

  const badNames: Record<string, string> = {
    empty: '',
    '201 characters': `mymod:${'x'.repeat(195)}`,
    'a space': 'my bin',
    "a leading '@'": '@link',
    'a control character': 'mymod:\tgeo',
    'a non-ASCII letter': 'mymod:géo',
  };

  it.each(Object.entries(badNames))(
    'refuses a bin name with %s in get and set, losing nothing',
    async (_what, name) => {
      const store = counting();
      const started = await startApp({ store: store.storage });
      const jar = createCookieJar();
      await setBin(jar, started, 'mymod:geo', 'Lyon');
      const made = await store.during(async () => {
        for (const path of [`/set?bin=${encodeURIComponent(name)}`, `/get?bin=${encodeURIComponent(name)}`]) {
          const refused = await jar.request(started.at(path), path.startsWith('/set') ? { json: 'x' } : {});
          expect(refused.status).toBe(400);
          const reply = refused.json<Reply>();
          expect(reply.error).toBe('BinError');
          expect(reply.message).toMatch(
            name.startsWith('@') ? /starts with '@'/ : /use 1 to 200 visible ASCII characters/,
          );
        }
      });
      expect(made).toEqual([]);
      expect((await getBin(jar, started, 'mymod:geo')).value).toBe('Lyon');
    },
  );

  it('takes a bin name of exactly 200 visible characters', async () => {
    const started = await startApp({});
    const jar = createCookieJar();
    const name = `mymod:${'~'.repeat(194)}`;
    expect(name).toHaveLength(200);
    expect((await setBin(jar, started, name, 1)).status).toBe(200);
    expect((await getBin(jar, started, name)).value).toBe(1);
  });

  it('refuses a bad name when a typed bin is made', () => {
    expect(() => bin('')).toThrow(BinError);
    expect(() => bin('@links')).toThrow(BinError);
  });

  it('refuses a value over the default 64 KiB, counting bytes of JSON', async () => {
    const store = counting();
    const started = await startApp({ store: store.storage });
    const jar = createCookieJar();
    await setBin(jar, started, 'mymod:big', 'small');
    // A string of n characters is n + 2 bytes of JSON.
    const refused = await setBin(jar, started, 'mymod:big', 'x'.repeat(65_535));
    expect(refused.status).toBe(400);
    expect(refused.json<Reply>()).toEqual({
      error: 'BinError',
      message: "bin 'mymod:big' is 65537 bytes as JSON, over the 65536-byte limit; visitor state is meant to be small",
    });
    expect((await getBin(jar, started, 'mymod:big')).value).toBe('small');
    expect((await setBin(jar, started, 'mymod:big', 'x'.repeat(65_534))).status).toBe(200);
    expect(((await getBin(jar, started, 'mymod:big')).value as string).length).toBe(65_534);
  });

  it('refuses a value over a configured maxValueBytes, counting UTF-8 bytes, not characters', async () => {
    const store = counting();
    const started = await startApp({ store: store.storage, maxValueBytes: 100 });
    const jar = createCookieJar();
    await setBin(jar, started, 'mymod:name', 'kept');
    const made = await store.during(async () => {
      // 52 characters, 102 bytes as JSON.
      const refused = await setBin(jar, started, 'mymod:name', 'é'.repeat(50));
      expect(refused.status).toBe(400);
      expect(refused.json<Reply>().message).toMatch(/102 bytes as JSON, over the 100-byte limit/);
    });
    expect(made).toEqual([]);
    expect((await getBin(jar, started, 'mymod:name')).value).toBe('kept');
    expect((await setBin(jar, started, 'mymod:name', 'é'.repeat(49))).status).toBe(200);
  });

  it('refuses a maxValueBytes that is not a positive whole number', () => {
    expect(() => createVisitorState({ secret: SECRET, maxValueBytes: 0 })).toThrow(ConfigError);
    expect(() => createVisitorState({ secret: SECRET, maxValueBytes: 1.5 })).toThrow(ConfigError);
  });
});

describe('store calls within one request', () => {
  const probe = (store: ReturnType<typeof counting>) =>
    startApp(
      { store: store.storage },
      basic(async (visitor, url) => {
        const { cache } = visitor;
        switch (url.pathname) {
          case '/get-twice':
            return { values: [await cache.get('a'), await cache.get('a')] };
          case '/get-concurrently':
            return { values: await Promise.all([cache.get('a'), cache.get('a')]) };
          case '/get-many':
            return { values: await cache.getMany(['a', 'b', 'c', 'd', 'e']), again: await cache.get('c') };
          case '/set-what-was-read': {
            const read = (await cache.get<{ n: number; list: number[] }>('a')) ?? { n: 0, list: [] };
            await cache.set('a', read);
            await cache.set('a', { n: read.n, list: [...read.list] });
            return { read };
          }
          case '/set-then-get':
            await cache.set('a', { n: 2, list: [2] });
            return { value: await cache.get('a') };
          case '/extend': {
            const read = await cache.get('a');
            await cache.set('a', read, { ttl: '2h' });
            return { read };
          }
          case '/fresh-copy': {
            const first = (await cache.get<{ n: number; list: number[] }>('a')) as { n: number; list: number[] };
            first.n = 99;
            first.list.push(99);
            const mine = { n: 5, list: [5] };
            await cache.set('b', mine);
            mine.list.push(6);
            return { second: await cache.get('a'), b: await cache.get('b') };
          }
          default:
            return undefined;
        }
      }),
    );

  const ready = async () => {
    const store = counting();
    const app = await probe(store);
    const jar = createCookieJar();
    await setBin(jar, app, 'a', { n: 1, list: [1] });
    for (const name of ['b', 'c']) await setBin(jar, app, name, name);
    return { store, app, jar };
  };

  it('reads a bin once when it is read twice, or twice at the same time', async () => {
    const { store, app, jar } = await ready();
    let reply: unknown;
    const twice = await store.during(async () => {
      reply = (await jar.request(app.at('/get-twice'))).json();
    });
    expect(reply).toEqual({
      values: [
        { n: 1, list: [1] },
        { n: 1, list: [1] },
      ],
    });
    expect(twice.map((call) => call.op)).toEqual(['get']);
    const concurrent = await store.during(() => jar.request(app.at('/get-concurrently')));
    expect(concurrent.map((call) => call.op)).toEqual(['get']);
  });

  it('reads five bins in one getMany call, and a bin among them again for free', async () => {
    const { store, app, jar } = await ready();
    let reply: unknown;
    const made = await store.during(async () => {
      reply = (await jar.request(app.at('/get-many'))).json();
    });
    expect(reply).toEqual({ values: [{ n: 1, list: [1] }, 'b', 'c', null, null], again: 'c' });
    expect(made).toEqual([{ op: 'getMany', visitorId: expect.any(String), bins: ['a', 'b', 'c', 'd', 'e'] }]);
  });

  it('writes nothing when the value set is the one just read', async () => {
    const { store, app, jar } = await ready();
    const made = await store.during(() => jar.request(app.at('/set-what-was-read')));
    expect(made.map((call) => call.op)).toEqual(['get']);
  });

  it('reads back within the request what it has just set, without asking the store', async () => {
    const { store, app, jar } = await ready();
    let reply: unknown;
    const made = await store.during(async () => {
      reply = (await jar.request(app.at('/set-then-get'))).json();
    });
    expect(reply).toEqual({ value: { n: 2, list: [2] } });
    expect(made.map((call) => call.op)).toEqual(['set']);
  });

  it('writes an unchanged value again when the set gives a ttl, to extend its life', async () => {
    const { store, app, jar } = await ready();
    const made = await store.during(() => jar.request(app.at('/extend')));
    expect(made.map((call) => [call.op, call.ttlMs])).toEqual([
      ['get', undefined],
      ['set', 7_200_000],
    ]);
  });

  it('gives a fresh copy on each get, and keeps what was set apart from the object passed', async () => {
    const { app, jar } = await ready();
    expect((await jar.request(app.at('/fresh-copy'))).json()).toEqual({
      second: { n: 1, list: [1] },
      b: { n: 5, list: [5] },
    });
    expect((await getBin(jar, app, 'b')).value).toEqual({ n: 5, list: [5] });
  });
});

describe('lifetimes', () => {
  it.each([
    ['90m', 5_400_000],
    ['12h', 43_200_000],
    ['30d', 2_592_000_000],
    ['45s', 45_000],
    ['1.5h', 5_400_000],
    [1_234, 1_234],
  ] as const)('stores a bin set with ttl %s for %i ms', async (ttl, ms) => {
    const store = counting();
    const app = await startApp({ store: store.storage });
    const made = await store.during(() => setBin(createCookieJar(), app, 'mymod:geo', 'Lyon', ttl));
    expect(made).toEqual([{ op: 'set', visitorId: expect.any(String), bins: ['mymod:geo'], ttlMs: ms }]);
  });

  it('uses the ttl option, a bins rule and a typed bin, most specific first; 30 days by default', async () => {
    const store = counting();
    const plain = await startApp({ store: store.storage });
    const ttlOfSet = async (app: App, name: string) =>
      (await store.during(() => setBin(createCookieJar(), app, name, 1)))[0]?.ttlMs;
    expect(await ttlOfSet(plain, 'mymod:geo')).toBe(2_592_000_000);

    const geo = bin<number>('mymod:typed', { ttl: '7d' });
    const configured = await startApp(
      { store: store.storage, ttl: '12h', bins: { 'short:*': { ttl: '90m' } } },
      basic(async (visitor, url) => {
        if (url.pathname === '/typed') await visitor.cache.set(geo, 1);
        return undefined;
      }),
    );
    expect(await ttlOfSet(configured, 'mymod:geo')).toBe(43_200_000);
    expect(await ttlOfSet(configured, 'short:choice')).toBe(5_400_000);
    const typed = await store.during(() => createCookieJar().request(configured.at('/typed')));
    expect(typed.map((call) => call.ttlMs)).toEqual([604_800_000]);
  });

  it('stops returning a bin once its lifetime is over', async () => {
    const app = await startApp({});
    const jar = createCookieJar();
    await setBin(jar, app, 'mymod:short', 'soon gone', 50);
    await setBin(jar, app, 'mymod:long', 'still here');
    await sleep(150);
    expect(await getBin(jar, app, 'mymod:short')).not.toHaveProperty('value');
    expect((await getBin(jar, app, 'mymod:long')).value).toBe('still here');
  });

  it.each(['soon', '5 m', '1w', '0', '-5', '0m', 'Infinity'])(
    'refuses ttl %j on a set with a ConfigError',
    async (ttl) => {
      const store = counting();
      const app = await startApp({ store: store.storage });
      const jar = createCookieJar();
      await setBin(jar, app, 'mymod:geo', 'Lyon');
      const made = await store.during(async () => {
        const refused = await setBin(jar, app, 'mymod:geo', 'Oslo', encodeURIComponent(ttl));
        expect(refused.status).toBe(400);
        expect(refused.json<Reply>().error).toBe('ConfigError');
        expect(refused.json<Reply>().message).toMatch(/'90m', '12h' or '30d'/);
      });
      expect(made).toEqual([]);
      expect((await getBin(jar, app, 'mymod:geo')).value).toBe('Lyon');
    },
  );

  it('refuses a bad ttl in the options, a bins rule and a typed bin at construction', () => {
    expect(() => createVisitorState({ secret: SECRET, ttl: 'forever' as never })).toThrow(ConfigError);
    expect(() => createVisitorState({ secret: SECRET, ttl: -1 })).toThrow(ConfigError);
    expect(() => createVisitorState({ secret: SECRET, bins: { 'ui:*': { ttl: '3 days' as never } } })).toThrow(
      /bins\['ui:\*'\]\.ttl must be/,
    );
    expect(() => bin('mymod:geo', { ttl: '1y' as never })).toThrow(ConfigError);
  });
});

describe('typed bins', () => {
  it('carry their data type, lifetime and store through get, getMany and set', async () => {
    const main = counting();
    const own = counting();
    const geo = bin<{ city: string }>('mymod:geo', { ttl: '7d' });
    const visits = bin<number>('mymod:visits', { store: own.storage });
    const app = await startApp(
      { store: main.storage },
      basic(async (visitor, url) => {
        const { cache } = visitor;
        if (url.pathname === '/typed-set') {
          await cache.set(geo, { city: 'Lyon' });
          await cache.set(visits, ((await cache.get(visits)) ?? 0) + 1);
          return undefined;
        }
        const [where, count, other] = await cache.getMany([geo, visits, 'mymod:other']);
        expectTypeOf(where).toEqualTypeOf<{ city: string } | undefined>();
        expectTypeOf(count).toEqualTypeOf<number | undefined>();
        expectTypeOf(other).toEqualTypeOf<unknown>();
        expectTypeOf(cache.get(geo)).resolves.toEqualTypeOf<{ city: string } | undefined>();
        return { city: where?.city, count, again: (await cache.get(geo))?.city };
      }),
    );
    const jar = createCookieJar();
    await jar.request(app.at('/typed-set'));
    await jar.request(app.at('/typed-set'));
    expect((await jar.request(app.at('/typed-get'))).json()).toEqual({ city: 'Lyon', count: 2, again: 'Lyon' });
    expect(main.calls.filter((call) => call.op === 'set').map((call) => [call.bins[0], call.ttlMs])).toEqual([
      ['mymod:geo', 604_800_000],
      ['mymod:geo', 604_800_000],
    ]);
    expect(own.calls.filter((call) => call.op === 'set').map((call) => call.bins[0])).toEqual([
      'mymod:visits',
      'mymod:visits',
    ]);
  });

  it('refuse data of another type at compile time', () => {
    const geo = bin<{ city: string }>('mymod:geo');
    const typeOnly = (cache: BinCache) => {
      // @ts-expect-error a number is not { city: string }
      void cache.set(geo, 5);
      // @ts-expect-error the city must be a string
      void cache.set(geo, { city: 1 });
    };
    expect(typeof typeOnly).toBe('function');
  });
});

describe("bins: { 'ui:*': { store: 'cookie:' } }", () => {
  it('keeps ui: bins in a sealed cookie and the others in the server store', async () => {
    const store = counting();
    const app = await startApp({ store: store.storage, bins: { 'ui:*': { store: 'cookie:' } } });
    const jar = createCookieJar();
    const set = await setBin(jar, app, 'ui:theme', { theme: 'dark' });
    expect(set.status).toBe(200);
    const sealed = set.setCookies.filter((line) => line.startsWith('vs_data.0='));
    expect(sealed).toHaveLength(1);
    expect(sealed[0]).not.toContain('dark');
    await setBin(jar, app, 'mymod:geo', 'Lyon');
    const { id } = await getBin(jar, app, 'mymod:geo');

    expect(await store.inner.get(id as string, 'ui:theme')).toBeUndefined();
    expect(await store.inner.get(id as string, 'mymod:geo')).toBe('Lyon');
    expect(store.calls.flatMap((call) => call.bins)).not.toContain('ui:theme');

    const read = await jar.request(app.at('/get?bin=ui:theme'));
    expect(read.json<Reply>().value).toEqual({ theme: 'dark' });
    // Read, not changed: the cookie is not sent again.
    expect(read.setCookies.filter((line) => line.startsWith('vs_data.'))).toEqual([]);
    // Another client has no such cookie, so no such bin.
    expect((await send(app.at('/get?bin=ui:theme'))).json()).not.toHaveProperty('value');
  });
});

describe('migrateFrom', () => {
  const sqlite = (name: string) => `sqlite://${join(dir, name)}`;

  it.each([
    ['another SQLite file', () => sqlite(`b-${Math.random()}.sqlite`)],
    ['memory', () => 'memory:'],
  ])('moves bins from a SQLite file to %s as they are read', async (_name, target) => {
    const from = sqlite(`a-${Math.random()}.sqlite`);
    const to = target();
    const jar = createCookieJar();
    const before = await startApp({ store: from });
    for (const [name, value] of Object.entries({ 'mymod:geo': 'Lyon', a: 1, b: [2], c: { c: 3 } }))
      expect((await setBin(jar, before, name, value)).status).toBe(200);

    const errors: VisitorStateError[] = [];
    const moving = await startApp(
      { store: to, migrateFrom: from, onError: (error) => errors.push(error) },
      basic(async (visitor, url) =>
        url.pathname === '/many' ? { values: await visitor.cache.getMany(['a', 'b', 'missing']) } : undefined,
      ),
    );
    expect((await getBin(jar, moving, 'mymod:geo')).value).toBe('Lyon');
    expect((await jar.request(moving.at('/many'))).json()).toEqual({ values: [1, [2], null] });

    const oldOnly = await startApp({ store: from });
    for (const name of ['mymod:geo', 'a', 'b']) expect(await getBin(jar, oldOnly, name)).not.toHaveProperty('value');
    // Not read, so not moved yet.
    expect((await getBin(jar, oldOnly, 'c')).value).toEqual({ c: 3 });
    // Now only the new store has them.
    expect((await getBin(jar, moving, 'mymod:geo')).value).toBe('Lyon');
    expect((await getBin(jar, moving, 'b')).value).toEqual([2]);
    expect(errors).toEqual([]);
  });
});

describe('store configuration errors', () => {
  it('names the known schemes for an unknown one, at construction', () => {
    registerStorage('cachetest', () => memoryStorage());
    const construct = () => createVisitorState({ secret: SECRET, store: 'nosuch://somewhere/state' });
    expect(construct).toThrow(ConfigError);
    expect(construct).toThrow(
      "unknown store scheme 'nosuch:'; use one of 'memory:', 'sqlite:', 'redis:', 'rediss:', 'postgres:', 'postgresql:', 'cookie:', 'cachetest:', or registerStorage('nosuch', factory) first",
    );
  });

  it.each(['memory', 'sqlite', 'redis', 'rediss', 'postgres', 'postgresql', 'cookie', 'Memory:'])(
    'refuses to register the built-in scheme %s',
    (scheme) => {
      expect(() => registerStorage(scheme, () => memoryStorage())).toThrow(ConfigError);
      expect(() => registerStorage(scheme, () => memoryStorage())).toThrow(/built-in storage/);
    },
  );

  const messages = (error: unknown): string[] =>
    error instanceof Error ? [error.message, ...messages(error.cause)] : error === undefined ? [] : [String(error)];

  it.each([
    ['an unknown scheme', 'nosuch://app:s3cretPW@somewhere/state'],
    ['an unknown scheme, with @ in the password', 'nosuch://app:x@s3cretPW@somewhere/state'],
    ['a string that is not a URL', 'not a url //app:s3cretPW@somewhere/state'],
  ])('refuses %s at construction, and never shows its password', (_what, store) => {
    let error: unknown;
    try {
      createVisitorState({ secret: SECRET, store });
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const seen = messages(error);
    expect(seen.length).toBeGreaterThan(0);
    for (const message of seen) expect(message).not.toContain('s3cretPW');
  });

  it.each([
    ['', 's3cretPW'],
    [', with @ in the password', 'x@s3cretPW'],
  ])('never shows the password of an unreachable Redis%s in an error', async (_what, password) => {
    const port = await freePort();
    const errors: VisitorStateError[] = [];
    const visitors = createVisitorState({
      secret: SECRET,
      store: `redis://app:${password}@127.0.0.1:${port}/0`,
      onError: (error) => errors.push(error),
    });
    const visitor = await visitors.resolve({ headers: {} });
    const failed = await visitor.cache.set('mymod:geo', 1).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(StorageError);
    expect(await visitor.cache.get('mymod:geo')).toBeUndefined();
    const seen = [...messages(failed), ...errors.flatMap(messages)];
    expect(seen.some((message) => message.includes(`redis://app:***@127.0.0.1:${port}/0`))).toBe(true);
    for (const message of seen) expect(message).not.toContain('s3cretPW');
    await visitors.close();
  });
});

describe('cache headers', () => {
  it('marks a response that resolved the visitor Cache-Control: private, unless the handler set its own', async () => {
    const app = await startApp({});
    expect((await send(app.at('/'))).headers['cache-control']).toBe('private');
    expect((await send(app.at('/?own-cache-control=no-store'))).headers['cache-control']).toBe('no-store');
  });

  it("adds Vary: Cookie with cacheControl: 'vary', keeping the handler's Cache-Control and Vary", async () => {
    const app = await startApp({ cacheControl: 'vary' });
    const plain = await send(app.at('/'));
    expect(plain.headers.vary).toBe('Cookie');
    expect(plain.headers['cache-control']).toBeUndefined();
    const own = await send(app.at('/?own-cache-control=public%2C%20max-age%3D60&own-vary=Accept-Encoding'));
    expect(own.headers['cache-control']).toBe('public, max-age=60');
    expect(String(own.headers.vary).split(/,\s*/)).toEqual(['Accept-Encoding', 'Cookie']);
  });

  it('adds nothing with cacheControl: false', async () => {
    const app = await startApp({ cacheControl: false });
    const reply = await send(app.at('/'));
    expect(reply.headers['cache-control']).toBeUndefined();
    expect(reply.headers.vary).toBeUndefined();
  });
});
