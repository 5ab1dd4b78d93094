import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as client5 from '@redis/client';
import * as client6 from 'redis-client-6';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/crypto.js';
import { ConfigError } from '../../src/errors.js';
import { type RedisDriver, redisStorage } from '../../src/state/redis-storage.js';
import { openStorage } from '../../src/state/registry.js';
import type { Capability, Storage, StorageOptions } from '../../src/state/storage.js';
import { storageContract } from '../../src/testing.js';
import {
  needRedis,
  needRedisCluster,
  needRedisServer,
  privateRedis,
  REDIS_URL,
  type RedisCluster,
  type RedisProcess,
  type RedisSentinelSet,
  redisCluster,
  redisSentinel,
} from '../helpers/services.js';

const REDIS: Capability[] = ['getMany', 'add', 'update', 'bins', 'entries', 'visitors', 'close'];

const MINUTE = 60_000;
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const drivers: Record<string, RedisDriver> = { '5': client5, '6': client6 };

const reported: unknown[] = [];
const optionsFor = (namespace = `vs-redis-${randomId().slice(0, 8)}`, extra: Partial<StorageOptions> = {}) => ({
  namespace,
  maxEntries: 100_000,
  // What is tested here does not depend on the timeout; a machine busy with other work must not fail it.
  timeoutMs: 2_000,
  report: (error: unknown) => reported.push(error),
  ...extra,
});

const redisUp = await needRedis();
const clusterTools = (await needRedisServer()) && (await needRedisCluster());
const dir = await mkdtemp(join(tmpdir(), 'visitor-state-redis-'));

let cluster: RedisCluster | undefined;
beforeAll(async () => {
  if (clusterTools) cluster = await redisCluster(join(dir, 'cluster'));
}, 30_000);
afterAll(async () => {
  await cluster?.stop();
  await rm(dir, { recursive: true, force: true });
  expect(reported).toEqual([]);
});

const redisCli = (port: number, ...args: string[]) =>
  spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' }).stdout.trim();

/** What a Redis store promises beyond the shared contract, on one server and on a cluster. */
function capabilities(where: string, open: (namespace?: string, extra?: Partial<StorageOptions>) => Promise<Storage>) {
  describe(`${where}: capabilities`, () => {
    let storage: Storage;
    beforeAll(async () => {
      storage = await open();
    });
    afterAll(() => storage.close?.());

    it('counts every one of 40 concurrent updates of one bin', async () => {
      const visitor = randomId();
      const results = await Promise.all(
        Array.from({ length: 40 }, () => storage.update!(visitor, 'visits', (n) => ((n as number) ?? 0) + 1, MINUTE)),
      );
      expect(await storage.get(visitor, 'visits')).toBe(40);
      expect(new Set(results).size).toBe(40);
      expect(await storage.bins!(visitor)).toEqual(['visits']);
    });

    it('writes nothing when next throws, deletes when it returns undefined, and hands out a copy', async () => {
      const visitor = randomId();
      await storage.set(visitor, 'cart', { items: [1] }, MINUTE);
      await expect(
        storage.update!(
          visitor,
          'cart',
          () => {
            throw new RangeError('no');
          },
          MINUTE,
        ),
      ).rejects.toThrow(RangeError);
      expect(await storage.get(visitor, 'cart')).toEqual({ items: [1] });
      const stored = (await storage.update!(
        visitor,
        'cart',
        (cart) => ({ items: [...(cart as { items: number[] }).items, 2] }),
        MINUTE,
      )) as { items: number[] };
      stored.items.push(99);
      expect(await storage.get(visitor, 'cart')).toEqual({ items: [1, 2] });
      expect(await storage.update!(visitor, 'cart', () => undefined, MINUTE)).toBeUndefined();
      expect(await storage.get(visitor, 'cart')).toBeUndefined();
      expect(await storage.bins!(visitor)).toEqual([]);
    });

    it('writes and reads 100 bins at once, with no listener-leak warning', async () => {
      const visitor = randomId();
      const warnings: Error[] = [];
      const listen = (warning: Error) => warnings.push(warning);
      process.on('warning', listen);
      try {
        const bins = Array.from({ length: 100 }, (_, i) => `b${i}`);
        await Promise.all(bins.map((bin, i) => storage.set(visitor, bin, { i }, MINUTE)));
        expect(await Promise.all(bins.map((bin) => storage.get(visitor, bin)))).toEqual(bins.map((_, i) => ({ i })));
        // A warning is emitted on the next tick.
        await sleep(10);
      } finally {
        process.off('warning', listen);
      }
      expect(warnings.map(String)).toEqual([]);
    });

    it('adds only what is absent', async () => {
      const visitor = randomId();
      expect(await storage.add!(visitor, '@link:user', 'first', MINUTE)).toBe(true);
      expect(await storage.add!(visitor, '@link:user', 'second', MINUTE)).toBe(false);
      expect(await storage.get(visitor, '@link:user')).toBe('first');
    });

    it("lists a visitor's bins with their data and expiry, the library's records included", async () => {
      const visitor = randomId();
      const before = Date.now();
      await storage.set(visitor, 'ui:theme', 'dark', MINUTE);
      await storage.set(visitor, '@link:u1', { user: 'x' }, 2 * MINUTE);
      await storage.set(visitor, 'short', 1, 100);
      await sleep(250);
      const after = Date.now();
      const entries = [...(await storage.entries!(visitor))].sort((a, b) => a.bin.localeCompare(b.bin));
      expect(entries.map(({ bin, data }) => ({ bin, data }))).toEqual([
        { bin: '@link:u1', data: { user: 'x' } },
        { bin: 'ui:theme', data: 'dark' },
      ]);
      expect(entries[0]!.expiresAt).toBeGreaterThan(before + 2 * MINUTE - 1_000);
      expect(entries[0]!.expiresAt).toBeLessThanOrEqual(after + 2 * MINUTE);
      expect([...(await storage.bins!(visitor))].sort()).toEqual(['@link:u1', 'ui:theme']);
    });

    it('dates entries by the injected clock; Redis itself expires by its own', async () => {
      const shifted = await open(undefined, { now: () => Date.now() + 10 * MINUTE });
      try {
        const visitor = randomId();
        await shifted.set(visitor, 'a', 1, MINUTE);
        const [entry] = await shifted.entries!(visitor);
        expect(entry!.expiresAt).toBeGreaterThan(Date.now() + 10 * MINUTE);
        expect(await shifted.get(visitor, 'a')).toBe(1);
      } finally {
        await shifted.close?.();
      }
    });

    it('pages through every visitor of its namespace and no other', async () => {
      const namespace = `vs-pages-${randomId().slice(0, 8)}`;
      const paged = await open(namespace);
      const other = await open(`${namespace}x`);
      try {
        const ids = Array.from({ length: 25 }, () => randomId());
        for (const id of ids) await paged.set(id, 'b', 1, MINUTE);
        await other.set(randomId(), 'b', 1, MINUTE);
        const seen = new Set<string>();
        let next: string | undefined;
        let pages = 0;
        do {
          const page = await paged.visitors!({ limit: 10, ...(next === undefined ? {} : { next }) });
          for (const id of page.ids) seen.add(id);
          next = page.next;
          pages++;
        } while (next !== undefined && pages < 1_000);
        expect([...seen].sort()).toEqual([...ids].sort());
      } finally {
        await paged.close?.();
        await other.close?.();
      }
    });

    it('refuses a namespace that would break the hash tag', async () => {
      await expect(open('a{b}')).rejects.toThrow(ConfigError);
    });
  });
}

for (const [major, driver] of Object.entries(drivers)) {
  const single = (namespace?: string, extra?: Partial<StorageOptions>) =>
    redisStorage(new URL(REDIS_URL), optionsFor(namespace, extra), { driver });
  const onCluster = (namespace?: string, extra?: Partial<StorageOptions>) =>
    redisStorage(cluster!.seeds, optionsFor(namespace, extra), { driver });

  describe.runIf(redisUp)(`Redis, @redis/client ${major}`, () => {
    storageContract(`Redis (@redis/client ${major})`, single, { capabilities: REDIS });
    capabilities(`Redis (@redis/client ${major})`, single);
  });
  describe.runIf(clusterTools)(`Redis Cluster of three masters, @redis/client ${major}`, () => {
    storageContract(`Redis Cluster (@redis/client ${major})`, onCluster, { capabilities: REDIS });
    capabilities(`Redis Cluster (@redis/client ${major})`, onCluster);
  });
}

describe.runIf(clusterTools)('with 300,000 other keys in the database', () => {
  let redis: RedisProcess;
  beforeAll(async () => {
    const own = join(dir, 'crowded');
    await import('node:fs/promises').then((fs) => fs.mkdir(own, { recursive: true }));
    redis = await privateRedis(own, ['--enable-debug-command', 'yes']);
    redisCli(redis.port, 'debug', 'populate', '300000', 'other');
    expect(redisCli(redis.port, 'dbsize')).toBe('300000');
  }, 30_000);
  afterAll(() => redis?.stop());

  it.each(Object.keys(drivers))(
    'lists, moves and erases a visitor within the default timeout (@redis/client %s)',
    async (major) => {
      const storage = await redisStorage(redis.url, optionsFor('vs'), { driver: drivers[major]! });
      try {
        const visitor = randomId();
        const fresh = randomId();
        for (let i = 0; i < 20; i++) await storage.set(visitor, `bin:${i}`, i, MINUTE);
        // What rotate() does: every bin with its lifetime under a new ID, then none under the old.
        for (const { bin, data, expiresAt } of await storage.entries!(visitor))
          await storage.set(fresh, bin, data, expiresAt - Date.now());
        for (const bin of await storage.bins!(visitor)) await storage.delete(visitor, bin);
        expect(await storage.bins!(visitor)).toEqual([]);
        expect((await storage.bins!(fresh)).length).toBe(20);
        // What forget() does.
        for (const bin of await storage.bins!(fresh)) await storage.delete(fresh, bin);
        expect(await storage.bins!(fresh)).toEqual([]);
        expect(redisCli(redis.port, 'dbsize')).toBe('300000');
      } finally {
        await storage.close?.();
      }
    },
  );
});

describe.runIf(clusterTools)('through Redis Sentinel (redis-sentinel://…/mymaster)', () => {
  let sentinel: RedisSentinelSet | undefined;
  beforeAll(async () => {
    sentinel = await redisSentinel(join(dir, 'sentinel'));
  }, 30_000);
  afterAll(() => sentinel?.stop());

  it.each(Object.keys(drivers))('stores, updates and lists bins on the master (@redis/client %s)', async (major) => {
    const options = optionsFor();
    const storage = await redisStorage(sentinel!.url, options, { driver: drivers[major]! });
    try {
      const visitor = randomId();
      await storage.set(visitor, 'geo', { city: 'Lyon' }, MINUTE);
      expect(await storage.get(visitor, 'geo')).toEqual({ city: 'Lyon' });
      await Promise.all(
        Array.from({ length: 10 }, () => storage.update!(visitor, 'n', (n) => ((n as number) ?? 0) + 1, MINUTE)),
      );
      expect(await storage.getMany!(visitor, ['n', 'geo'])).toEqual([10, { city: 'Lyon' }]);
      expect([...(await storage.bins!(visitor))].sort()).toEqual(['geo', 'n']);
      // It is the master the sentinels name that holds the data.
      expect(redisCli(sentinel!.master.port, 'get', `${options.namespace}:{${visitor}}:geo`)).toBe('{"city":"Lyon"}');
    } finally {
      await storage.close?.();
    }
  });

  it('is what a redis-sentinel:// store option opens', async () => {
    const storage = (await openStorage(sentinel!.url, optionsFor())) as Storage;
    try {
      const visitor = randomId();
      await storage.set(visitor, 'a', 1, MINUTE);
      expect(await storage.get(visitor, 'a')).toBe(1);
    } finally {
      await storage.close?.();
    }
  });

  it('refuses a Sentinel URL that names no master', async () => {
    await expect(redisStorage('redis-sentinel://127.0.0.1:26379', optionsFor())).rejects.toThrow(ConfigError);
  });
});

describe.runIf(clusterTools)('while its server is down', () => {
  it.each(Object.keys(drivers))(
    'fails each call instead of queueing it, reports the outage once, and recovers (@redis/client %s)',
    async (major) => {
      const own = join(dir, `down-${major}`);
      await import('node:fs/promises').then((fs) => fs.mkdir(own, { recursive: true }));
      const redis = await privateRedis(own);
      const heard: unknown[] = [];
      const storage = await redisStorage(
        redis.url,
        { namespace: 'vs-down', maxEntries: 1, report: (error) => heard.push(error) },
        { driver: drivers[major]! },
      );
      try {
        const visitor = randomId();
        await storage.set(visitor, 'a', 1, MINUTE);
        await redis.stop();
        for (let i = 0; i < 5; i++) {
          await expect(storage.get(visitor, 'a')).rejects.toThrow();
          await expect(storage.set(visitor, 'a', 2, MINUTE)).rejects.toThrow();
        }
        expect(heard.length).toBe(1);
        await redis.start();
        for (let i = 0; i < 100 && (await storage.get(visitor, 'a').catch(() => 'down')) === 'down'; i++)
          await sleep(50);
        await storage.set(visitor, 'a', 3, MINUTE);
        expect(await storage.get(visitor, 'a')).toBe(3);
      } finally {
        await storage.close?.();
        await redis.stop();
      }
    },
  );
});
