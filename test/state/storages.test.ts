import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import KeyvRedis from '@keyv/redis';
import Keyv from 'keyv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/crypto.js';
import { ConfigError, StorageError } from '../../src/errors.js';
import { keyvStorage } from '../../src/state/keyv-storage.js';
import { loadPeer } from '../../src/state/load-peer.js';
import { memoryStorage } from '../../src/state/memory-storage.js';
import { postgresStorage } from '../../src/state/postgres-storage.js';
import { redisStorage } from '../../src/state/redis-storage.js';
import { sqliteStorage } from '../../src/state/sqlite-storage.js';
import type { Storage, StorageOptions } from '../../src/state/storage.js';
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
import { storageContract } from './storage-contract.js';

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

storageContract('memory', async () => memoryStorage());

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

storageContract('SQLite file', (namespace) =>
  sqliteStorage(new URL(`sqlite://${join(dir, 'contract', 'state.sqlite')}`), optionsFor(namespace)),
);

storageContract('SQLite in memory', (namespace) => sqliteStorage(new URL('sqlite::memory:'), optionsFor(namespace)));

if (redisUp)
  storageContract('Redis', (namespace) => redisStorage(new URL(REDIS_URL), optionsFor(namespace)), {
    lacks: ['sweep'],
  });

if (postgresUp)
  storageContract('PostgreSQL', (namespace) => postgresStorage(new URL(DATABASE_URL), optionsFor(namespace)));

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

  storageContract('Redis Cluster', (namespace) => redisStorage(seeds, optionsFor(namespace)), { lacks: ['sweep'] });

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
  lacks: ['bins', 'add', 'sweep'],
});

if (redisUp) {
  storageContract(
    'Keyv over @keyv/redis',
    async (namespace) => overKeyv(new Keyv({ store: new KeyvRedis(REDIS_URL), namespace: namespace ?? 'vs-keyv' })),
    { cleanup: closeKeyv, lacks: ['bins', 'add', 'sweep'] },
  );
}

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
