import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@redis/client';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  authResolver,
  cookieResolver,
  createKeyRing,
  createVisitorState,
  type LinkPolicy,
  memoryStorage,
  randomId,
  type StoreOption,
  type VisitorChange,
  type VisitorState,
} from '../src/index.js';
import { sqliteDriver } from '../src/state/sqlite-driver.js';
import { type CookieJar, createCookieJar } from './helpers/cookie-jar.js';
import { serve, type TestServer } from './helpers/http.js';
import {
  DATABASE_URL,
  needPostgres,
  needRedis,
  needRedisCluster,
  REDIS_URL,
  type RedisCluster,
  redisCluster,
} from './helpers/services.js';

const SECRET = 'unified-id-secret-long-enough-000001';
const linkId = (user: string) => `L${createKeyRing([SECRET]).mac('link', user, 16)}`;

const servers: TestServer[] = [];
const states: VisitorState[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  // Close the stores before their servers go away (the cluster stops after the last test).
  await Promise.all(states.splice(0).map((v) => v.close()));
});

interface Reply {
  id: string;
  source: string;
  value?: unknown;
  outcome?: string;
}

/**
 * A real node:http app. A device is "logged in" while it sends `x-test-user` (the app's own,
 * verified session in this test); `/login` is where the app calls `visitor.link()`.
 */
async function app(store: StoreOption, options: { linkPolicy?: LinkPolicy; namespace?: string } = {}) {
  const changes: VisitorChange[] = [];
  const visitors = createVisitorState({
    secret: SECRET,
    store,
    namespace: options.namespace ?? `uid-${randomId().slice(0, 8)}`,
    resolvers: [
      cookieResolver(),
      authResolver({ identify: (req) => (req as { headers: Record<string, string> }).headers['x-test-user'] }),
    ],
    bins: { 'ui:*': { store: 'cookie:' } },
    // These tests are about links and erasure, not outages: on a loaded machine a store call can
    // pass the default 250 ms, which this app's onError would turn into a failed request.
    timeout: 5_000,
    onVisitorChange: (change) => changes.push(change),
    onError: (error) => {
      throw error;
    },
    ...(options.linkPolicy ? { linkPolicy: options.linkPolicy } : {}),
  });
  states.push(visitors);
  const server = await serve(async (req, res) => {
    const visitor = await visitors.resolve(req, res);
    const url = new URL(req.url ?? '/', 'http://x');
    const bin = url.searchParams.get('bin') ?? '';
    const reply: Record<string, unknown> = {};
    switch (url.pathname) {
      case '/login':
        reply.outcome = await visitor.link(String(req.headers['x-test-user']));
        break;
      case '/set':
        await visitor.cache.set(bin, url.searchParams.get('value'));
        break;
      case '/get':
        reply.value = await visitor.cache.get(bin);
        break;
      case '/rotate':
        await visitor.rotate();
        break;
      case '/forget':
        await visitor.forget();
        break;
      case '/link-as': {
        // A user ID of any JSON type, as an application with a bug might pass it.
        const user: unknown = JSON.parse(url.searchParams.get('user') ?? 'null');
        reply.outcome = await visitor.link(user as string).catch((error: Error) => error.name);
        break;
      }
      case '/late-rotate':
      case '/late-login': {
        // The headers go out first; rotate() and an adoption must then refuse to move anything.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.flushHeaders();
        const late =
          url.pathname === '/late-rotate'
            ? visitor.rotate()
            : visitor.link(String(req.headers['x-test-user']), { policy: 'adopt' });
        reply.outcome = await late.then(
          (outcome) => outcome ?? 'rotated',
          (error: Error) => `${error.name}: ${error.message}`,
        );
        res.end(JSON.stringify({ id: visitor.id, source: visitor.source, ...reply }));
        return;
      }
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ id: visitor.id, source: visitor.source, ...reply }));
  });
  servers.push(server);
  const call = async (jar: CookieJar, path: string, user?: string) =>
    (await jar.request(server.url + path, user ? { headers: { 'x-test-user': user } } : {})).json<Reply>();
  return { call, changes, visitors };
}

describe('link across devices', () => {
  it("with policy 'adopt', a second device moves onto the visitor of the first and sees its bins", async () => {
    const { call, changes } = await app(memoryStorage(), { linkPolicy: 'adopt' });
    const deviceA = createCookieJar();
    const deviceB = createCookieJar();
    const a = await call(deviceA, '/set?bin=demo:geo&value=Lyon');
    expect((await call(deviceA, '/login', 'ada')).outcome).toBe('linked');

    const b = await call(deviceB, '/set?bin=demo:theme&value=dark');
    expect(b.id).not.toBe(a.id);
    const login = await call(deviceB, '/login', 'ada');
    expect(login).toMatchObject({ outcome: 'adopted', id: a.id, source: 'link' });
    expect(changes).toEqual([{ type: 'adopt', from: b.id, to: a.id }]);

    expect(await call(deviceB, '/get?bin=demo:geo', 'ada')).toMatchObject({ id: a.id, value: 'Lyon' });
    expect((await call(deviceB, '/get?bin=demo:theme', 'ada')).value).toBe('dark');
    expect((await call(deviceA, '/get?bin=demo:theme', 'ada')).value).toBe('dark');

    // Logging out on either device leaves the IDs in place.
    expect((await call(deviceA, '/get?bin=demo:geo')).id).toBe(a.id);
    expect((await call(deviceB, '/get?bin=demo:geo')).id).toBe(a.id);
  });

  it("with policy 'keep', a second device keeps its own visitor", async () => {
    const { call } = await app(memoryStorage());
    const deviceA = createCookieJar();
    const deviceB = createCookieJar();
    const a = await call(deviceA, '/set?bin=demo:geo&value=Lyon');
    await call(deviceA, '/login', 'ada');
    const b = await call(deviceB, '/get?bin=demo:geo');
    expect(await call(deviceB, '/login', 'ada')).toMatchObject({ outcome: 'kept', id: b.id });
    expect(await call(deviceB, '/get?bin=demo:geo', 'ada')).toMatchObject({ id: b.id });
    expect((await call(deviceB, '/get?bin=demo:geo', 'ada')).value).toBeUndefined();
    expect((await call(deviceB, '/get?bin=demo:geo')).id).toBe(b.id);
    expect((await call(deviceA, '/get?bin=demo:geo')).id).toBe(a.id);
  });

  it('resolves the user on a device without a visitor cookie to the linked visitor', async () => {
    const { call } = await app(memoryStorage());
    const deviceA = createCookieJar();
    const a = await call(deviceA, '/set?bin=demo:geo&value=Lyon');
    await call(deviceA, '/login', 'ada');
    const fresh = createCookieJar();
    expect(await call(fresh, '/get?bin=demo:geo', 'ada')).toMatchObject({ id: a.id, source: 'auth', value: 'Lyon' });
    // After logout the new device keeps the linked visitor through its cookie.
    expect(await call(fresh, '/get?bin=demo:geo')).toMatchObject({ id: a.id, source: 'cookie' });
  });

  it('forgets a link with unlink(), for an account deletion', async () => {
    const storage = memoryStorage();
    const { call, visitors } = await app(storage);
    const deviceA = createCookieJar();
    const a = await call(deviceA, '/get?bin=x');
    await call(deviceA, '/login', 'ada');
    expect((await call(createCookieJar(), '/get?bin=x', 'ada')).id).toBe(a.id);
    await visitors.unlink('ada');
    expect((await call(createCookieJar(), '/get?bin=x', 'ada')).id).not.toBe(a.id);
    // Nothing of the link stays under the visitor either.
    expect((await storage.bins?.(a.id))?.filter((name) => name.startsWith('@link'))).toEqual([]);
  });
});

describe('link on a shared device', () => {
  it("moves only the logging-in user: on a kiosk, Bob's adoption leaves Alice's link and bins where they are", async () => {
    const { call } = await app(memoryStorage(), { linkPolicy: 'adopt' });
    const bobsPhone = createCookieJar();
    const kiosk = createCookieJar();
    const bob = await call(bobsPhone, '/set?bin=demo:diary&value=bob-private', 'bob');
    expect((await call(bobsPhone, '/login', 'bob')).outcome).toBe('linked');

    const alice = await call(kiosk, '/set?bin=demo:cart&value=alice-cart', 'alice');
    expect((await call(kiosk, '/login', 'alice')).outcome).toBe('linked');
    // Bob logs in on the kiosk: the kiosk moves onto Bob's visitor, nothing of Alice's comes along.
    expect(await call(kiosk, '/login', 'bob')).toMatchObject({ outcome: 'adopted', id: bob.id });
    expect((await call(bobsPhone, '/get?bin=demo:cart')).value).toBeUndefined();

    // Alice on a fresh device: her own visitor, with her own bins, never Bob's.
    const aliceElsewhere = createCookieJar();
    expect(await call(aliceElsewhere, '/get?bin=demo:cart', 'alice')).toMatchObject({
      id: alice.id,
      source: 'auth',
      value: 'alice-cart',
    });
    expect((await call(aliceElsewhere, '/get?bin=demo:diary', 'alice')).value).toBeUndefined();
    expect((await call(aliceElsewhere, '/get?bin=demo:diary')).id).not.toBe(bob.id);

    // A third user's first login on the kiosk, now Bob's visitor, records no link to it.
    expect(await call(kiosk, '/login', 'carol')).toMatchObject({ outcome: 'kept', id: bob.id });
    const carolElsewhere = await call(createCookieJar(), '/get?bin=demo:diary', 'carol');
    expect(carolElsewhere.id).not.toBe(bob.id);
    expect(carolElsewhere.value).toBeUndefined();

    // Alice back on the kiosk switches it to her visitor; Bob's stays his.
    expect(await call(kiosk, '/login', 'alice')).toMatchObject({ outcome: 'adopted', id: alice.id });
    expect((await call(bobsPhone, '/get?bin=demo:diary', 'bob')).value).toBe('bob-private');
    expect((await call(createCookieJar(), '/get?bin=demo:diary', 'bob')).id).toBe(bob.id);
  });
});

describe('user IDs', () => {
  it('are strings or finite numbers, 1 and "1" one user; anything else is a BinError from link()', async () => {
    const { call } = await app(memoryStorage());
    const device = createCookieJar();
    for (const bad of ['{"id":1}', '{"id":2}', '[1]', 'true', '""', 'null']) {
      expect((await call(device, `/link-as?user=${encodeURIComponent(bad)}`)).outcome).toBe('BinError');
    }
    const me = await call(device, '/link-as?user=1');
    expect(me.outcome).toBe('linked');
    expect((await call(createCookieJar(), '/link-as?user="1"')).outcome).toBe('kept');
    expect((await call(createCookieJar(), '/get?bin=x', '1')).id).toBe(me.id);
  });
});

describe('after the response headers are sent', () => {
  it('rotate() rejects with a CookieError before moving anything, and the state stays under the old ID', async () => {
    const { call, changes } = await app(memoryStorage());
    const device = createCookieJar();
    const before = await call(device, '/set?bin=demo:geo&value=Lyon');
    await call(device, '/login', 'ada');
    const late = await call(device, '/late-rotate');
    expect(late.outcome).toMatch(/^CookieError: rotate\(\) after the response headers were sent/);
    expect(late.id).toBe(before.id);
    expect(changes).toEqual([]);
    expect(await call(device, '/get?bin=demo:geo')).toMatchObject({ id: before.id, source: 'cookie', value: 'Lyon' });
    expect((await call(createCookieJar(), '/get?bin=demo:geo', 'ada')).id).toBe(before.id);
  });

  it('an adoption rejects with a CookieError before moving anything', async () => {
    const { call, changes } = await app(memoryStorage());
    const phone = createCookieJar();
    const laptop = createCookieJar();
    const linked = await call(phone, '/login', 'ada');
    const own = await call(laptop, '/set?bin=demo:geo&value=Lyon');
    const late = await call(laptop, '/late-login', 'ada');
    expect(late.outcome).toMatch(/^CookieError: an adoption after the response headers were sent/);
    expect(changes).toEqual([]);
    expect(await call(laptop, '/get?bin=demo:geo')).toMatchObject({ id: own.id, value: 'Lyon' });
    expect((await call(createCookieJar(), '/get?bin=demo:geo', 'ada')).id).toBe(linked.id);
  });
});

describe('rotate', () => {
  it('moves the bins to a new ID; the old cookie finds nothing', async () => {
    const { call, changes } = await app(memoryStorage());
    const device = createCookieJar();
    const before = await call(device, '/set?bin=demo:geo&value=Lyon');
    await call(device, '/set?bin=ui:theme&value=dark');
    const oldCookie = device.get('vsid') as string;

    const rotated = await call(device, '/rotate');
    expect(rotated.id).not.toBe(before.id);
    expect(changes).toEqual([{ type: 'rotate', from: before.id, to: rotated.id }]);
    expect(await call(device, '/get?bin=demo:geo')).toMatchObject({ id: rotated.id, value: 'Lyon' });
    expect((await call(device, '/get?bin=ui:theme')).value).toBe('dark');

    const attacker = createCookieJar();
    attacker.set('vsid', oldCookie);
    expect((await call(attacker, '/get?bin=demo:geo')).value).toBeUndefined();
  });

  it('keeps the user linked to the rotated visitor', async () => {
    const { call } = await app(memoryStorage());
    const device = createCookieJar();
    await call(device, '/login', 'ada');
    const rotated = await call(device, '/rotate');
    expect((await call(createCookieJar(), '/get?bin=x', 'ada')).id).toBe(rotated.id);
  });
});

/** Where a storage can be listed directly, bypassing visitor-state: every visitor ID it holds. */
interface Listed {
  name: string;
  available: () => Promise<boolean>;
  store: (namespace: string) => Promise<StoreOption>;
  visitors: (namespace: string) => Promise<string[]>;
  cleanup?: () => Promise<void>;
}

let dir = '';
let cluster: RedisCluster | undefined;
const clusterUp = await needRedisCluster();
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vs-forget-'));
  if (clusterUp) cluster = await redisCluster(dir);
});
afterAll(async () => {
  await cluster?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Every visitor ID whose keys a Redis server (or each node of a cluster) holds in a namespace. */
async function redisVisitors(urls: readonly string[], ns: string): Promise<string[]> {
  const keys: string[] = [];
  for (const url of urls) {
    const client = createClient({ url });
    await client.connect();
    for await (const batch of client.scanIterator({ MATCH: `${ns}:*`, COUNT: 1000 })) keys.push(...batch);
    await client.close();
  }
  return keys.map((key) => /\{([^}]*)\}/.exec(key)?.[1] ?? key);
}

const memory = memoryStorage();
const redisUp = await needRedis();
const postgresUp = await needPostgres();

const listed: Listed[] = [
  {
    name: 'memory',
    available: async () => true,
    store: async () => memory,
    // The memory store has no key listing of its own beyond bins(); ask it for each candidate.
    visitors: async () => [],
  },
  {
    name: 'SQLite',
    available: async () => true,
    store: async () => `sqlite://${join(dir, 'forget.sqlite')}`,
    visitors: async (ns) => {
      const db = (await sqliteDriver(join(dir, 'forget.sqlite'))).open(join(dir, 'forget.sqlite'));
      const rows = db.prepare('SELECT DISTINCT visitor FROM visitor_state WHERE ns = ?').all(ns) as {
        visitor: string;
      }[];
      db.close();
      return rows.map((row) => row.visitor);
    },
  },
  {
    name: 'Redis',
    available: async () => redisUp,
    store: async () => REDIS_URL,
    visitors: (ns) => redisVisitors([REDIS_URL], ns),
  },
  {
    name: 'a Redis Cluster',
    available: async () => clusterUp,
    store: async () => cluster?.seeds ?? '',
    visitors: (ns) => redisVisitors(cluster?.nodes.map((node) => node.url) ?? [], ns),
  },
  {
    name: 'PostgreSQL',
    available: async () => postgresUp,
    store: async () => DATABASE_URL,
    visitors: async (ns) => {
      const client = new pg.Client({ connectionString: DATABASE_URL });
      await client.connect();
      const { rows } = await client.query<{ visitor: string }>(
        'SELECT DISTINCT visitor FROM visitor_state WHERE ns = $1',
        [ns],
      );
      await client.end();
      return rows.map((row) => row.visitor);
    },
  },
];

describe.each(listed)('forget() on $name', ({ available, store, visitors: listVisitors }) => {
  it('leaves no entry for the visitor or its link, and clears its cookies', async (context) => {
    if (!(await available())) return context.skip();
    const namespace = `forget-${randomId().slice(0, 8)}`;
    const storage = await store(namespace);
    const { call, changes } = await app(storage, { namespace });
    const device = createCookieJar();
    const other = createCookieJar();
    const me = await call(device, '/set?bin=demo:geo&value=Lyon');
    await call(device, '/set?bin=demo:theme&value=dark');
    await call(device, '/set?bin=ui:lang&value=fr');
    await call(device, '/login', 'ada');
    const them = await call(other, '/set?bin=demo:geo&value=Oslo');

    const before = await listVisitors(namespace);
    if (storage !== memory) expect(before).toEqual(expect.arrayContaining([me.id, them.id, linkId('ada')]));

    await call(device, '/forget');
    expect(changes).toEqual([{ type: 'forget', from: me.id, to: me.id }]);
    expect(device.cookies()).toEqual({});

    if (storage === memory) {
      expect(await memory.bins?.(me.id)).toEqual([]);
      expect(await memory.bins?.(linkId('ada'))).toEqual([]);
      expect(await memory.bins?.(them.id)).toEqual(['demo:geo']);
    } else {
      const after = await listVisitors(namespace);
      expect(after).not.toContain(me.id);
      expect(after).not.toContain(linkId('ada'));
      expect(after).toContain(them.id);
    }
    expect((await call(other, '/get?bin=demo:geo')).value).toBe('Oslo');
    expect((await call(createCookieJar(), '/get?bin=demo:geo', 'ada')).id).not.toBe(me.id);
  });
});

describe.each(listed)('three concurrent logins on one visitor, then forget(), on $name', ({ available, store }) => {
  it('leave none of the users resolving to the erased visitor', async (context) => {
    if (!(await available())) return context.skip();
    const namespace = `logins-${randomId().slice(0, 8)}`;
    const { call } = await app(await store(namespace), { namespace });
    const device = createCookieJar();
    const me = await call(device, '/set?bin=demo:geo&value=Lyon');
    const users = ['ann', 'ben', 'cat'].map((name) => `${name}-${randomId().slice(0, 6)}`);
    const outcomes = await Promise.all(users.map((user) => call(device, '/login', user)));
    const linked = users.filter((_, i) => outcomes[i]?.outcome === 'linked');
    expect(linked.length).toBeGreaterThan(0);
    for (const user of linked) expect((await call(createCookieJar(), '/get?bin=demo:geo', user)).id).toBe(me.id);

    await call(device, '/forget');
    for (const user of users) {
      const elsewhere = await call(createCookieJar(), '/get?bin=demo:geo', user);
      expect(elsewhere.id).not.toBe(me.id);
      expect(elsewhere.value).toBeUndefined();
    }
  });
});

const concurrentStores: { name: string; available: () => Promise<boolean>; store: () => StoreOption }[] = [
  { name: 'memory', available: async () => true, store: () => memoryStorage() },
  { name: 'SQLite', available: async () => true, store: () => `sqlite://${join(dir, `adopt-${randomId()}.sqlite`)}` },
  { name: 'Redis', available: async () => redisUp, store: () => REDIS_URL },
];

describe.each(concurrentStores)('two concurrent logins on $name', ({ available, store }) => {
  it("end under 'adopt' on one visitor, with no bin lost", async (context) => {
    if (!(await available())) return context.skip();
    for (let round = 0; round < 5; round++) {
      const { call } = await app(store(), { linkPolicy: 'adopt' });
      const deviceA = createCookieJar();
      const deviceB = createCookieJar();
      await call(deviceA, '/set?bin=demo:a&value=from-a');
      await call(deviceB, '/set?bin=demo:b&value=from-b');
      await Promise.all([call(deviceA, '/login', 'ada'), call(deviceB, '/login', 'ada')]);
      const [a, b] = await Promise.all([call(deviceA, '/get?bin=demo:a'), call(deviceB, '/get?bin=demo:b')]);
      expect(a.id).toBe(b.id);
      expect(a.value).toBe('from-a');
      expect(b.value).toBe('from-b');
      expect((await call(deviceA, '/get?bin=demo:b')).value).toBe('from-b');
      expect((await call(deviceB, '/get?bin=demo:a')).value).toBe('from-a');
    }
  });
});
