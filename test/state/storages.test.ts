import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import KeyvRedis from '@keyv/redis';
import { parse as parseCookie } from 'cookie';
import Keyv from 'keyv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyRing, randomId } from '../../src/crypto.js';
import { ConfigError, StorageError } from '../../src/errors.js';
import { withFallbacks } from '../../src/state/capabilities.js';
import { cookieStorage } from '../../src/state/cookie-storage.js';
import { keyvStorage } from '../../src/state/keyv-storage.js';
import { loadPeer } from '../../src/state/load-peer.js';
import { memoryStorage } from '../../src/state/memory-storage.js';
import { postgresStorage } from '../../src/state/postgres-storage.js';
import { redisStorage } from '../../src/state/redis-storage.js';
import { sqliteStorage } from '../../src/state/sqlite-storage.js';
import type { Capability, RequestScopedStorage, Storage, StorageOptions } from '../../src/state/storage.js';
import { storageContract } from '../../src/testing.js';
import { createVisitorState } from '../../src/visitor-state.js';
import {
  DATABASE_URL,
  freePort,
  needPostgres,
  needRedis,
  needRedisCluster,
  needRedisServer,
  privateRedis,
  REDIS_URL,
  type RedisCluster,
  type RedisProcess,
  redisCluster,
} from '../helpers/services.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

// Connection errors on the shared services would be a failure of the run: collect them.
const reported: unknown[] = [];
const optionsFor = (namespace = 'vs-test'): StorageOptions => ({
  namespace,
  maxEntries: 100_000,
  report: (error) => reported.push(error),
});

const dir = await mkdtemp(join(tmpdir(), 'visitor-state-storages-'));
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  expect(reported).toEqual([]);
});

const redisUp = await needRedis();
const postgresUp = await needPostgres();
const redisServer = await needRedisServer();
const clusterTools = redisServer && (await needRedisCluster());

// What each store has today, beside the contract: the suite checks each list is exact.
const MEMORY: Capability[] = ['getMany', 'add', 'bins', 'sweep', 'peek', 'close'];
const SQL: Capability[] = ['getMany', 'add', 'bins', 'sweep', 'close'];
const REDIS: Capability[] = ['getMany', 'add', 'update', 'bins', 'entries', 'visitors', 'close'];
const KEYV: Capability[] = ['getMany', 'bins', 'close'];
const COOKIES: Capability[] = ['getMany', 'bins'];

storageContract('memory', async () => memoryStorage(), { capabilities: MEMORY });

describe('memory storage bound', () => {
  it('drops the visitors least recently used first', async () => {
    const storage = memoryStorage({ maxEntries: 4 });
    const [a, b, c, d] = [randomId(), randomId(), randomId(), randomId()];
    await storage.set(a, 'x', 'a', 60_000);
    await storage.set(b, 'x', 'b', 60_000);
    await storage.set(c, 'x', 'c', 60_000);
    expect(await storage.get(a, 'x')).toBe('a');
    await storage.set(d, 'x', 'd', 60_000);
    await storage.set(d, 'y', 'd', 60_000);
    expect(await storage.get(b, 'x')).toBeUndefined();
    expect(await storage.bins?.(b)).toEqual([]);
    expect((await storage.bins?.(d))?.sort()).toEqual(['x', 'y']);
    expect(await storage.get(a, 'x')).toBe('a');
  });

  it('never holds more than maxEntries bins', async () => {
    const storage = memoryStorage({ maxEntries: 10 });
    for (let i = 0; i < 100; i++) await storage.set(randomId(), `bin${i % 3}`, i, 20);
    await new Promise((resolve) => setTimeout(resolve, 40));
    // Everything has expired by now, so a sweep removes, and counts, all that was still held.
    const held = (await storage.sweep?.()) ?? Number.NaN;
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(10);
  });

  it('keeps at most maxEntries of one visitor, dropping its oldest bins', async () => {
    const storage = memoryStorage({ maxEntries: 4 });
    const visitor = randomId();
    for (const bin of ['a', 'b', 'c', 'd', 'e']) await storage.set(visitor, bin, bin, 60_000);
    const kept = (await storage.bins?.(visitor)) ?? [];
    expect(kept.length).toBeLessThanOrEqual(4);
    expect(kept).toContain('e');
    expect(await storage.getMany?.(visitor, ['a', 'e'])).toEqual([undefined, 'e']);
  });
});

storageContract(
  'SQLite file',
  (namespace) => sqliteStorage(new URL(`sqlite://${join(dir, 'contract', 'state.sqlite')}`), optionsFor(namespace)),
  { capabilities: SQL },
);

storageContract('SQLite in memory', (namespace) => sqliteStorage(new URL('sqlite::memory:'), optionsFor(namespace)), {
  capabilities: SQL,
});

if (redisUp)
  storageContract('Redis', (namespace) => redisStorage(new URL(REDIS_URL), optionsFor(namespace)), {
    capabilities: REDIS,
  });

if (postgresUp)
  storageContract('PostgreSQL', (namespace) => postgresStorage(new URL(DATABASE_URL), optionsFor(namespace)), {
    capabilities: SQL,
  });

describe.runIf(clusterTools)('over a Redis Cluster of three masters', () => {
  let cluster: RedisCluster;
  let seeds = '';
  let nodes: readonly RedisProcess[] = [];

  beforeAll(async () => {
    cluster = await redisCluster(dir);
    seeds = cluster.seeds;
    nodes = cluster.nodes;
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  storageContract('Redis Cluster', (namespace) => redisStorage(seeds, optionsFor(namespace)), {
    capabilities: REDIS,
  });

  it('finds the whole cluster from one seed given with ?cluster=true', async () => {
    const storage = await redisStorage(new URL(`redis://127.0.0.1:${nodes[1]?.port}/?cluster=true`), optionsFor());
    try {
      // Enough visitors that their slots fall on every master.
      const visitors = Array.from({ length: 30 }, () => randomId());
      for (const visitor of visitors) await storage.set(visitor, 'geo', visitor, 60_000);
      for (const visitor of visitors)
        expect(await storage.getMany?.(visitor, ['geo', 'none'])).toEqual([visitor, undefined]);
      const keysPerNode = await Promise.all(
        nodes.map(async (node) => Number((await run('redis-cli', ['-p', String(node.port), 'dbsize'])).stdout)),
      );
      expect(keysPerNode.every((count) => count > 0)).toBe(true);
    } finally {
      await storage.close?.();
    }
  });
});

const keyvs = new WeakMap<Storage, Keyv>();
const overKeyv = (keyv: Keyv) => {
  const storage = keyvStorage(keyv, optionsFor());
  keyvs.set(storage, keyv);
  return storage;
};
const closeKeyv = async (storage: Storage) => {
  await storage.close?.();
  await keyvs.get(storage)?.disconnect();
};

storageContract('Keyv in memory', async (namespace) => overKeyv(new Keyv(namespace ? { namespace } : {})), {
  cleanup: closeKeyv,
  capabilities: KEYV,
});

if (redisUp) {
  storageContract(
    'Keyv over @keyv/redis',
    async (namespace) => overKeyv(new Keyv({ store: new KeyvRedis(REDIS_URL), namespace: namespace ?? 'vs-keyv' })),
    { cleanup: closeKeyv, capabilities: KEYV },
  );
}

/**
 * Cookie storage as the contract sees a storage: one browser per visitor ID (the cookies
 * hold one visitor's bins), each call a request of its own that sends that browser's
 * cookies and keeps what the response sets.
 */
function browsers(scoped: RequestScopedStorage): Storage {
  const keys = createKeyRing(['storages-test-secret-0123456789abcdefghij']);
  const jars = new Map<string, Map<string, string>>();
  const call = <T>(visitorId: string, run: (bound: Storage) => Promise<T>): Promise<T> => {
    const own = jars.get(visitorId) ?? new Map<string, string>();
    jars.set(visitorId, own);
    const cookies = Object.fromEntries(own);
    const bound = scoped.bind({
      cookies,
      secure: false,
      keys,
      now: Date.now,
      response: {
        headersSent: false,
        getHeader: () => undefined,
        setHeader: () => {},
        appendHeader: () => {},
        setCookie(name, serialized) {
          const value = parseCookie(serialized)[name] ?? '';
          if (/max-age=0(;|$)/i.test(serialized) || value === '') own.delete(name);
          else own.set(name, value);
        },
      },
    });
    return run(bound);
  };
  return {
    get: (id, bin) => call(id, (s) => s.get(id, bin)),
    getMany: (id, bins) => call(id, (s) => (s.getMany as NonNullable<Storage['getMany']>)(id, bins)),
    set: (id, bin, data, ttlMs) => call(id, (s) => s.set(id, bin, data, ttlMs)),
    delete: (id, bin) => call(id, (s) => s.delete(id, bin)),
    bins: (id) => call(id, (s) => (s.bins as NonNullable<Storage['bins']>)(id)),
  };
}

storageContract('cookie', async () => browsers(cookieStorage()), { capabilities: COOKIES });

/**
 * A storage of the application's own over a Map: the three required methods, and `update`
 * when asked (atomic: it reads and writes in one synchronous step after a pause).
 */
function mapStorage(withUpdate: boolean): Storage {
  const map = new Map<string, { json: string; expires: number }>();
  const live = (key: string) => {
    const entry = map.get(key);
    return entry && entry.expires > Date.now() ? (JSON.parse(entry.json) as unknown) : undefined;
  };
  const pause = () => sleep(Math.random() * 3);
  const storage: Storage = {
    async get(id, bin) {
      await pause();
      return live(`${id} ${bin}`);
    },
    async set(id, bin, data, ttlMs) {
      await pause();
      map.set(`${id} ${bin}`, { json: JSON.stringify(data), expires: Date.now() + ttlMs });
    },
    async delete(id, bin) {
      await pause();
      map.delete(`${id} ${bin}`);
    },
  };
  if (withUpdate)
    storage.update = async (id, bin, next, ttlMs) => {
      await pause();
      const data = next(live(`${id} ${bin}`));
      if (data === undefined) map.delete(`${id} ${bin}`);
      else map.set(`${id} ${bin}`, { json: JSON.stringify(data), expires: Date.now() + ttlMs });
      return data === undefined ? undefined : JSON.parse(JSON.stringify(data));
    };
  return storage;
}

storageContract('custom, with update and nothing else', async () => mapStorage(true), { capabilities: ['update'] });
storageContract('custom, with only get, set and delete', async () => mapStorage(false));

describe("the bin index visitor-state keeps for a storage that cannot list a visitor's bins", () => {
  it('loses no name when requests write bins of one visitor at once, and forget() finds them all', async () => {
    const storage = mapStorage(true);
    const visitors = createVisitorState({ secret: 'storages-test-secret-0123456789abcdefghij', store: storage });
    const visitor = await visitors.resolveView(
      { header: () => undefined, peerAddress: '127.0.0.1', encrypted: false, raw: {} },
      undefined,
    );
    const id = visitor.id;
    // Two requests writing two bins, and three concurrent link back-references.
    const direct = withFallbacks(storage, 'store custom storage');
    await Promise.all([
      visitor.cache.set('test:a', 1),
      visitor.cache.set('test:b', 2),
      direct.set(id, '@link:L1', 1, 60_000),
      direct.set(id, '@link:L2', 1, 60_000),
      direct.set(id, '@link:L3', 1, 60_000),
    ]);
    expect((await direct.bins(id)).sort()).toEqual(['@bins', '@link:L1', '@link:L2', '@link:L3', 'test:a', 'test:b']);
    await visitor.forget();
    for (const bin of ['@bins', '@link:L1', '@link:L2', '@link:L3', 'test:a', 'test:b'])
      expect(await storage.get(id, bin)).toBeUndefined();
    await visitors.close();
  });
});

describe.each([
  ['over a Map', () => new Keyv({ namespace: `vs-scan-${randomId()}` }), true],
  [
    'over @keyv/redis',
    () => new Keyv({ store: new KeyvRedis(REDIS_URL), namespace: `vs-scan-${randomId()}` }),
    redisUp,
  ],
] as const)('forget() and rotate() on a Keyv instance %s', (_name, makeKeyv, up) => {
  const keysOf = async (keyv: Keyv) => {
    const keys: string[] = [];
    for await (const [key] of keyv.iterator?.(undefined) ?? []) keys.push(key as string);
    return keys;
  };
  const visitorOn = async (keyv: Keyv) => {
    const visitors = createVisitorState({ secret: 'storages-test-secret-0123456789abcdefghij', store: keyv });
    const response = {
      headersSent: false,
      getHeader: () => undefined,
      setHeader() {},
      appendHeader() {},
      setCookie() {},
    };
    const visitor = await visitors.resolveView(
      { header: () => undefined, peerAddress: '127.0.0.1', encrypted: false, raw: {} },
      response,
    );
    return { visitors, visitor };
  };

  it.runIf(up)('leaves no key of the visitor after forget()', async () => {
    const keyv = makeKeyv();
    const { visitors, visitor } = await visitorOn(keyv);
    const id = visitor.id;
    await visitor.cache.set('mymod:a', 1);
    await visitor.cache.set('mymod:b', { b: 2 });
    expect((await keysOf(keyv)).filter((key) => key.includes(id))).toHaveLength(2);
    await visitor.forget();
    expect((await keysOf(keyv)).filter((key) => key.includes(id))).toEqual([]);
    await visitors.close();
    await keyv.disconnect();
  });

  it.runIf(up)('reads every bin under the new ID after rotate(), and keeps none under the old', async () => {
    const keyv = makeKeyv();
    const { visitors, visitor } = await visitorOn(keyv);
    const from = visitor.id;
    await visitor.cache.set('mymod:a', 1);
    await visitor.cache.set('mymod:b', { b: 2 });
    await visitor.rotate();
    expect(await visitor.cache.getMany(['mymod:a', 'mymod:b'])).toEqual([1, { b: 2 }]);
    const keys = await keysOf(keyv);
    expect(keys.filter((key) => key.includes(from))).toEqual([]);
    expect(keys.filter((key) => key.includes(visitor.id)).sort()).toEqual([
      `${visitor.id}:mymod:a`,
      `${visitor.id}:mymod:b`,
    ]);
    await visitors.close();
    await keyv.disconnect();
  });
});

describe('a Keyv store that fails', () => {
  it('rejects reads and writes with a StorageError, and reports the failure', async () => {
    const port = await freePort();
    const store = new KeyvRedis(
      { url: `redis://127.0.0.1:${port}`, disableOfflineQueue: true, socket: { reconnectStrategy: false } },
      { throwOnConnectError: true, connectionTimeout: 200 },
    );
    const keyv = new Keyv({ store });
    const seen: unknown[] = [];
    const storage = keyvStorage(keyv, { ...optionsFor(), report: (error) => seen.push(error) });
    const visitor = randomId();
    await expect(storage.set(visitor, 'geo', 'Lyon', 60_000)).rejects.toBeInstanceOf(StorageError);
    await expect(storage.get(visitor, 'geo')).rejects.toBeInstanceOf(StorageError);
    await expect(storage.getMany?.(visitor, ['geo'])).rejects.toBeInstanceOf(StorageError);
    await expect(storage.delete(visitor, 'geo')).rejects.toBeInstanceOf(StorageError);
    // Reported once for the outage, not once per failed call.
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeInstanceOf(StorageError);
    await storage.close?.();
    await keyv.disconnect().catch(() => undefined);
  });

  it('treats deleting an absent bin as done, not as a failure', async () => {
    const storage = keyvStorage(new Keyv(), optionsFor());
    await expect(storage.delete(randomId(), 'never-set')).resolves.toBeUndefined();
  });
});

describe.runIf(redisServer)('while Redis is down', () => {
  let redis: RedisProcess;
  beforeAll(async () => {
    const redisDir = join(dir, 'outage');
    await mkdir(redisDir, { recursive: true });
    redis = await privateRedis(redisDir);
  });
  afterAll(() => redis.stop());

  const eventually = async <T>(attempt: () => Promise<T>): Promise<T> => {
    for (let i = 0; ; i++) {
      try {
        return await attempt();
      } catch (error) {
        if (i === 100) throw error;
        await sleep(50);
      }
    }
  };

  it('opens anyway, fails fast, reports once, and recovers by itself when the server returns', async () => {
    await redis.stop();
    const seen: unknown[] = [];
    const storage = await redisStorage(new URL(redis.url), { ...optionsFor(), report: (e) => seen.push(e) });
    const visitor = randomId();
    await expect(storage.set(visitor, 'geo', 'Lyon', 60_000)).rejects.toThrow();
    await expect(storage.get(visitor, 'geo')).rejects.toThrow();
    await sleep(300);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeInstanceOf(StorageError);

    await redis.start();
    await eventually(() => storage.set(visitor, 'geo', 'Lyon', 60_000));
    expect(await storage.get(visitor, 'geo')).toBe('Lyon');

    // A server lost while in use: writes fail at once, and the storage comes back with it.
    await redis.stop();
    await expect(storage.set(visitor, 'geo', 'Oslo', 60_000)).rejects.toThrow();
    await redis.start();
    await eventually(() => storage.set(visitor, 'geo', 'Oslo', 60_000));
    expect(await storage.get(visitor, 'geo')).toBe('Oslo');
    expect(seen).toHaveLength(2);
    await storage.close?.();
  });

  it('opens a cluster whose seeds are down, and rejects until it can reach them', async () => {
    const port = await freePort();
    const seen: unknown[] = [];
    const storage = await redisStorage(`redis://127.0.0.1:${port},127.0.0.1:${port}/`, {
      ...optionsFor(),
      report: (e) => seen.push(e),
    });
    await expect(storage.get(randomId(), 'geo')).rejects.toBeInstanceOf(StorageError);
    expect(seen).toHaveLength(1);
    await storage.close?.();
  });
});

describe.runIf(postgresUp)('while PostgreSQL is unreachable', () => {
  it('opens anyway, reports, and rejects operations', async () => {
    const port = await freePort();
    const seen: unknown[] = [];
    const storage = await postgresStorage(new URL(`postgres://postgres@127.0.0.1:${port}/test`), {
      ...optionsFor(),
      report: (e) => seen.push(e),
    });
    expect(seen).toHaveLength(1);
    await expect(storage.get(randomId(), 'geo')).rejects.toThrow(/ECONNREFUSED/);
    await storage.close?.();
  });
});

describe('a store driver that is not installed', () => {
  it('is a ConfigError that names the package to install, without the password', async () => {
    const name = `visitor-state-no-such-driver-${randomId().toLowerCase()}`;
    const error = await loadPeer(name, 'redis://app:s3cret@cache:6379', () => import(name)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe(
      `store 'redis://app:***@cache:6379' needs the package ${name}: npm install ${name}`,
    );
  });
});
