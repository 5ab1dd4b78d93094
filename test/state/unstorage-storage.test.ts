import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStorage } from 'unstorage';
import fsDriver from 'unstorage/drivers/fs';
import memoryDriver from 'unstorage/drivers/memory';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveVisitor } from '../../src/adapters/fetch.js';
import { randomId } from '../../src/crypto.js';
import { createVisitorState, StorageError } from '../../src/index.js';
import type { StorageOptions } from '../../src/state/storage.js';
import { isUnstorage, unstorageStorage } from '../../src/state/unstorage-storage.js';
import { storageContract } from '../../src/testing.js';

const reported: unknown[] = [];
const optionsFor = (namespace = 'vs-test', now?: () => number): StorageOptions => ({
  namespace,
  maxEntries: 100_000,
  report: (error) => reported.push(error),
  ...(now ? { now } : {}),
});

const dir = await mkdtemp(join(tmpdir(), 'visitor-state-unstorage-'));
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  expect(reported).toEqual([]);
});

const memory = createStorage({ driver: memoryDriver() });
const files = createStorage({ driver: fsDriver({ base: dir }) });

const capabilities = ['getMany', 'bins', 'entries', 'sweep'] as const;
storageContract('unstorage, memory driver', (namespace) => unstorageStorage(memory, optionsFor(namespace)), {
  capabilities,
});
storageContract('unstorage, fs driver', (namespace) => unstorageStorage(files, optionsFor(namespace)), {
  capabilities,
});

describe('unstorage storage', () => {
  it('is told apart from a storage and from a Keyv instance', () => {
    expect(isUnstorage(memory)).toBe(true);
    expect(isUnstorage(unstorageStorage(memory, optionsFor()))).toBe(false);
    expect(isUnstorage({ get: async () => undefined, set: async () => {}, delete: async () => {} })).toBe(false);
  });

  it('has no atomic add or update, and no visitor listing', () => {
    const storage = unstorageStorage(memory, optionsFor());
    expect(storage.add).toBeUndefined();
    expect(storage.update).toBeUndefined();
    expect(storage.visitors).toBeUndefined();
  });

  it('keeps every bin name apart, whatever unstorage does to keys', async () => {
    const storage = unstorageStorage(files, optionsFor(`ns-${randomId()}`));
    const visitor = randomId();
    // unstorage turns `/` into `:`, collapses `::`, cuts at `?` and refuses `.` and `..` segments.
    const names = ['a/b', 'a:b', 'a::b', ':a', 'a:', 'x?y', 'x', '..', '.', 'a\\b', '%41', 'A', 'mymod:geo'];
    for (const [i, name] of names.entries()) await storage.set(visitor, name, i, 60_000);
    for (const [i, name] of names.entries()) expect(await storage.get(visitor, name)).toBe(i);
    expect((await storage.bins?.(visitor))?.sort()).toEqual([...names].sort());
  });

  it('writes each visitor under a folder of its own on the fs driver', async () => {
    const namespace = `ns-${randomId()}`;
    const storage = unstorageStorage(files, optionsFor(namespace));
    const visitor = randomId();
    await storage.set(visitor, 'mymod:geo', 'Lyon', 60_000);
    expect(await readdir(join(dir, namespace, visitor))).toEqual(['mymod%3Ageo']);
  });

  it('gives the driver a lifetime of at least 60 s, the least Workers KV accepts', async () => {
    const lifetimes: unknown[] = [];
    const store = createStorage({ driver: memoryDriver() });
    const setItem = store.setItem.bind(store);
    const recording = Object.assign(store, {
      setItem: (key: string, value: unknown, options?: { ttl?: number }) => {
        lifetimes.push(options?.ttl);
        return setItem(key, value as string, options);
      },
    });
    const storage = unstorageStorage(recording, optionsFor());
    await storage.set(randomId(), 'short', 1, 1_500);
    await storage.set(randomId(), 'long', 1, 90_500);
    expect(lifetimes).toEqual([60, 91]);
  });

  it('hides a bin at its own expiry even where the driver keeps it longer', async () => {
    let now = 1_000_000;
    const storage = unstorageStorage(
      memory,
      optionsFor(`ns-${randomId()}`, () => now),
    );
    const visitor = randomId();
    await storage.set(visitor, 'short', 'soon gone', 5_000);
    now += 4_999;
    expect(await storage.get(visitor, 'short')).toBe('soon gone');
    now += 1;
    expect(await storage.get(visitor, 'short')).toBeUndefined();
    expect(await storage.entries?.(visitor)).toEqual([]);
    expect(await storage.sweep?.()).toBe(1);
  });

  it('lists entries with their expiry', async () => {
    const now = 2_000_000;
    const storage = unstorageStorage(
      memory,
      optionsFor(`ns-${randomId()}`, () => now),
    );
    const visitor = randomId();
    await storage.set(visitor, 'geo', { city: 'Lyon' }, 60_000);
    expect(await storage.entries?.(visitor)).toEqual([{ bin: 'geo', data: { city: 'Lyon' }, expiresAt: now + 60_000 }]);
  });

  it('reads an entry some other program wrote under its keys as absent', async () => {
    const namespace = `ns-${randomId()}`;
    const storage = unstorageStorage(memory, optionsFor(namespace));
    const visitor = randomId();
    await memory.setItem(`${namespace}:${visitor}:foreign`, 'not an entry');
    expect(await storage.get(visitor, 'foreign')).toBeUndefined();
    expect(await storage.bins?.(visitor)).toEqual([]);
  });
});

describe('an unstorage instance as the store option', () => {
  it('keeps bins across requests, forgets them on request, and leaves the instance open', async () => {
    const store = createStorage({ driver: memoryDriver() });
    const visitors = createVisitorState({ secret: 'unstorage-test-secret-long-enough-01', store });
    const first = (await resolveVisitor(visitors, new Request('http://localhost/'))).visitor;
    await first.cache.set('demo:visits', 1);
    expect(await first.cache.get('demo:visits')).toBe(1);
    expect((await store.getKeys()).length).toBeGreaterThan(0);
    await first.forget();
    expect(await store.getKeys()).toEqual([]);
    await visitors.close();
    await store.setItem('still', 'open');
    expect(await store.getItem('still')).toBe('open');
  });

  it('reports a driver that fails, and the request goes on', async () => {
    const failing = createStorage({
      driver: {
        name: 'down',
        hasItem: async () => false,
        getItem: () => Promise.reject(new Error('ECONNREFUSED')),
        setItem: () => Promise.reject(new Error('ECONNREFUSED')),
        getKeys: async () => [],
      },
    });
    const seen: unknown[] = [];
    const visitors = createVisitorState({
      secret: 'unstorage-test-secret-long-enough-01',
      store: failing,
      onError: (error) => seen.push(error),
    });
    const visitor = (await resolveVisitor(visitors, new Request('http://localhost/'))).visitor;
    expect(await visitor.cache.get('demo:visits')).toBeUndefined();
    // A write to a store that is down resolves false after reporting why: it never crashes a server.
    expect(await visitor.cache.set('demo:visits', 1)).toBe(false);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen[0]).toBeInstanceOf(StorageError);
    await visitors.close();
  });
});
