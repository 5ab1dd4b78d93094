import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from './crypto.js';
import { ConfigError } from './errors.js';
import type { RequestView, ResponseView } from './http.js';
import { CAPABILITIES, type Capability, type Storage } from './state/storage.js';
import type { Visitor } from './visitor.js';
import { createVisitorState } from './visitor-state.js';

/** Opens the storage under test; two namespaces over one place must not see each other. */
export type MakeStorage = (namespace?: string) => Storage | Promise<Storage>;

/** Options of {@link storageContract}. */
export interface StorageContractOptions {
  /**
   * The optional methods the storage has. The suite checks that it has exactly these, runs
   * their cases, and shows that visitor-state refuses loudly what needs one it lacks.
   * @default [] (only `get`, `set`, `delete`)
   */
  capabilities?: readonly Capability[];
  /**
   * Called for each storage the suite opened, once it is done.
   * @default the storage's own `close()`
   */
  cleanup?: (storage: Storage) => Promise<void>;
}

const MINUTE = 60_000;
const SECRET = 'storage-contract-secret-0123456789abcdef';
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/** A request with no cookie, and a response that takes cookies: enough for rotate() and forget(). */
function request(): { view: RequestView; response: ResponseView } {
  const headers = new Map<string, string>();
  return {
    view: { header: () => undefined, peerAddress: '127.0.0.1', encrypted: false, raw: {} },
    response: {
      headersSent: false,
      getHeader: (name) => headers.get(name),
      setHeader: (name, value) => headers.set(name, value),
      appendHeader: (name, value) => headers.set(name, value),
      setCookie: () => {},
    },
  };
}

/**
 * The contract every storage keeps, as one vitest `describe` block: the three required
 * methods, each optional method the storage declares in `capabilities`, and what
 * visitor-state does over it (`cache.update`, `forget()`, `rotate()`): works, or refuses with
 * a `ConfigError` that names the storage's missing method. Visitor IDs are random, so runs
 * against a shared server do not collide; use a namespace of the run's own where you can.
 *
 * @example
 * ```ts
 * import { storageContract } from 'visitor-state/testing';
 * import { fileStorage } from '../src/file-storage.js';
 *
 * storageContract('file', (namespace = 'vs') => fileStorage(`/tmp/state/${namespace}`), {
 *   capabilities: ['getMany', 'add', 'bins', 'sweep'],
 * });
 * ```
 */
export function storageContract(name: string, makeStorage: MakeStorage, options: StorageContractOptions = {}): void {
  const declared = new Set(options.capabilities ?? []);
  const has = (capability: Capability) => declared.has(capability);
  // A case of an optional method exists only for storages that have it, so none is ever skipped.
  const itWith = (capability: Capability, title: string, test: () => Promise<void>) => {
    if (has(capability)) it(title, test);
  };
  const itWithout = (capability: Capability, title: string, test: () => Promise<void>) => {
    if (!has(capability)) it(title, test);
  };
  const canList = has('bins') || has('entries') || has('update');

  describe(`${name} storage`, () => {
    const opened: Storage[] = [];
    let storage: Storage;

    const open = async (namespace?: string) => {
      const made = await makeStorage(namespace);
      opened.push(made);
      return made;
    };

    /** A visitor-state over this storage, and the visitor of one request. */
    // The instance is not closed: that would close the storage, which the suite closes last.
    const visitorOver = async (): Promise<Visitor> => {
      const visitors = createVisitorState({ secret: SECRET, store: storage, timeout: 5_000, onError: () => {} });
      const { view, response } = request();
      return visitors.resolveView(view, response);
    };

    beforeAll(async () => {
      storage = await open();
    });

    afterAll(async () => {
      for (const made of opened) {
        if (options.cleanup) await options.cleanup(made);
        else await made.close?.();
      }
    });

    it('has exactly the optional methods it declares', () => {
      for (const capability of CAPABILITIES) {
        expect(typeof storage[capability], capability).toBe(has(capability) ? 'function' : 'undefined');
      }
    });

    it('gives undefined for a bin that was never set', async () => {
      expect(await storage.get(randomId(), 'absent')).toBeUndefined();
    });

    it('gives back what was set, as a fresh copy each time', async () => {
      const visitor = randomId();
      const data = { city: 'Lyon', tags: ['a', 'b'], nested: { n: 1 } };
      await storage.set(visitor, 'geo', data, MINUTE);
      const first = (await storage.get(visitor, 'geo')) as typeof data;
      expect(first).toEqual(data);
      first.tags.push('changed');
      first.nested.n = 2;
      expect(await storage.get(visitor, 'geo')).toEqual(data);
      data.city = 'Paris';
      expect(await storage.get(visitor, 'geo')).toEqual({ ...data, city: 'Lyon' });
    });

    it('replaces a bin that is set again', async () => {
      const visitor = randomId();
      await storage.set(visitor, 'choice', 'first', MINUTE);
      await storage.set(visitor, 'choice', { second: true }, MINUTE);
      expect(await storage.get(visitor, 'choice')).toEqual({ second: true });
    });

    it('forgets a deleted bin and keeps the others', async () => {
      const visitor = randomId();
      await storage.set(visitor, 'gone', 1, MINUTE);
      await storage.set(visitor, 'kept', 2, MINUTE);
      await storage.delete(visitor, 'gone');
      expect(await storage.get(visitor, 'gone')).toBeUndefined();
      expect(await storage.get(visitor, 'kept')).toBe(2);
      await storage.delete(visitor, 'never-there');
    });

    it('stops returning a bin once its lifetime is over, and keeps a long-lived one', async () => {
      const visitor = randomId();
      await storage.set(visitor, 'short', 'soon gone', 100);
      await storage.set(visitor, 'long', 'still here', MINUTE);
      expect(await storage.get(visitor, 'short')).toBe('soon gone');
      await sleep(250);
      expect(await storage.get(visitor, 'short')).toBeUndefined();
      expect(await storage.get(visitor, 'long')).toBe('still here');
      if (storage.getMany) expect(await storage.getMany(visitor, ['short', 'long'])).toEqual([undefined, 'still here']);
      if (storage.bins) expect(await storage.bins(visitor)).toEqual(['long']);
      if (storage.entries) expect((await storage.entries(visitor)).map((entry) => entry.bin)).toEqual(['long']);
    });

    it('keeps two visitors with the same bin name apart', async () => {
      const alice = randomId();
      const bob = randomId();
      await storage.set(alice, 'geo', 'Lyon', MINUTE);
      await storage.set(bob, 'geo', 'Oslo', MINUTE);
      await storage.delete(bob, 'geo');
      expect(await storage.get(alice, 'geo')).toBe('Lyon');
      expect(await storage.get(bob, 'geo')).toBeUndefined();
    });

    it('keeps two namespaces over the same store apart', async () => {
      const one = await open(`ns-${randomId()}`);
      const two = await open(`ns-${randomId()}`);
      const visitor = randomId();
      await one.set(visitor, 'geo', 'Lyon', MINUTE);
      expect(await two.get(visitor, 'geo')).toBeUndefined();
      await two.set(visitor, 'geo', 'Oslo', MINUTE);
      expect(await one.get(visitor, 'geo')).toBe('Lyon');
      await two.delete(visitor, 'geo');
      expect(await one.get(visitor, 'geo')).toBe('Lyon');
      if (one.bins && two.bins) {
        expect(await one.bins(visitor)).toEqual(['geo']);
        expect(await two.bins(visitor)).toEqual([]);
      }
    });

    it('round-trips every kind of JSON value', async () => {
      const visitor = randomId();
      const values: Record<string, unknown> = {
        object: { a: { b: { c: [1, { d: null }] } }, empty: {} },
        array: [1, 'two', false, null, [], {}],
        unicode: 'Zürich ☕ 東京 🚀 \u0000 \ud800 "quoted" \\ \n',
        integer: 42,
        negative: -0.5,
        large: 1.7976931348623157e308,
        zero: 0,
        true: true,
        false: false,
        null: null,
        emptyString: '',
      };
      for (const [bin, value] of Object.entries(values)) await storage.set(visitor, bin, value, MINUTE);
      for (const [bin, value] of Object.entries(values)) expect(await storage.get(visitor, bin)).toEqual(value);
      if (storage.getMany) expect(await storage.getMany(visitor, Object.keys(values))).toEqual(Object.values(values));
    });

    itWith('getMany', 'reads several bins in the order asked, absent ones as undefined', async () => {
      const visitor = randomId();
      await storage.set(visitor, 'b', 'bee', MINUTE);
      await storage.set(visitor, 'a', { a: 1 }, MINUTE);
      expect(await storage.getMany?.(visitor, ['a', 'missing', 'b', 'a'])).toEqual([
        { a: 1 },
        undefined,
        'bee',
        { a: 1 },
      ]);
      expect(await storage.getMany?.(visitor, [])).toEqual([]);
    });

    itWith('bins', "lists a visitor's bins, the library's @ records included, and no one else's", async () => {
      const visitor = randomId();
      const other = randomId();
      // Glob characters in a bin name or visitor ID must not widen the match.
      await storage.set(visitor, 'mymod:geo', 1, MINUTE);
      await storage.set(visitor, 'ab*[x]?', 2, MINUTE);
      await storage.set(visitor, '@link:Labc', 1, MINUTE);
      await storage.set(other, 'other', 3, MINUTE);
      expect((await storage.bins?.(visitor))?.sort()).toEqual(['@link:Labc', 'ab*[x]?', 'mymod:geo']);
      expect(await storage.bins?.(randomId())).toEqual([]);
      await storage.delete(visitor, 'mymod:geo');
      expect((await storage.bins?.(visitor))?.sort()).toEqual(['@link:Labc', 'ab*[x]?']);
    });

    itWith('entries', "lists a visitor's bins with their data and expiry", async () => {
      const visitor = randomId();
      const before = Date.now();
      await storage.set(visitor, 'geo', { city: 'Lyon' }, MINUTE);
      await storage.set(visitor, '@link:Labc', 1, 2 * MINUTE);
      const after = Date.now();
      const listed = [...((await storage.entries?.(visitor)) ?? [])].sort((a, b) => a.bin.localeCompare(b.bin));
      expect(listed.map(({ bin, data }) => ({ bin, data }))).toEqual([
        { bin: '@link:Labc', data: 1 },
        { bin: 'geo', data: { city: 'Lyon' } },
      ]);
      // A store may keep expiry to the second: a second of slack either way.
      const [link, geo] = listed;
      expect(geo?.expiresAt).toBeGreaterThanOrEqual(before + MINUTE - 1_000);
      expect(geo?.expiresAt).toBeLessThanOrEqual(after + MINUTE + 1_000);
      expect(link?.expiresAt).toBeGreaterThanOrEqual(before + 2 * MINUTE - 1_000);
      expect(await storage.entries?.(randomId())).toEqual([]);
    });

    itWith('add', 'adds a bin only when it is absent or expired, and says whether it did', async () => {
      const visitor = randomId();
      expect(await storage.add?.(visitor, 'claim', 'first', MINUTE)).toBe(true);
      expect(await storage.add?.(visitor, 'claim', 'second', MINUTE)).toBe(false);
      expect(await storage.get(visitor, 'claim')).toBe('first');
      await storage.set(visitor, 'short', 'old', 50);
      await sleep(120);
      expect(await storage.add?.(visitor, 'short', 'new', MINUTE)).toBe(true);
      expect(await storage.get(visitor, 'short')).toBe('new');
      const racers = await Promise.all(Array.from({ length: 8 }, (_, i) => storage.add?.(visitor, 'race', i, MINUTE)));
      expect(racers.filter(Boolean)).toHaveLength(1);
      expect(await storage.get(visitor, 'race')).toBe(racers.indexOf(true));
    });

    itWith('update', 'updates a bin atomically: twenty concurrent increments make twenty', async () => {
      const visitor = randomId();
      const increments = Array.from({ length: 20 }, () =>
        storage.update?.(visitor, 'visits', (n) => ((n as number | undefined) ?? 0) + 1, MINUTE),
      );
      const results = (await Promise.all(increments)) as number[];
      expect(await storage.get(visitor, 'visits')).toBe(20);
      // Each call resolves to what it stored: every count from 1 to 20 once.
      expect([...results].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    });

    itWith(
      'update',
      'gives update a fresh copy, deletes on undefined, and writes nothing when next throws',
      async () => {
        const visitor = randomId();
        await storage.set(visitor, 'geo', { city: 'Lyon', tags: ['a'] }, MINUTE);
        const stored = await storage.update?.(
          visitor,
          'geo',
          (current) => {
            const copy = current as { city: string; tags: string[] };
            copy.tags.push('b');
            return { ...copy, city: 'Oslo' };
          },
          MINUTE,
        );
        expect(stored).toEqual({ city: 'Oslo', tags: ['a', 'b'] });
        expect(await storage.get(visitor, 'geo')).toEqual({ city: 'Oslo', tags: ['a', 'b'] });
        const refused = new Error('refused');
        await expect(
          storage.update?.(
            visitor,
            'geo',
            () => {
              throw refused;
            },
            MINUTE,
          ),
        ).rejects.toBe(refused);
        expect(await storage.get(visitor, 'geo')).toEqual({ city: 'Oslo', tags: ['a', 'b'] });
        expect(await storage.update?.(visitor, 'geo', () => undefined, MINUTE)).toBeUndefined();
        expect(await storage.get(visitor, 'geo')).toBeUndefined();
        let seen: unknown = 'not called';
        await storage.update?.(
          visitor,
          'fresh',
          (current) => {
            seen = current;
            return 1;
          },
          MINUTE,
        );
        expect(seen).toBeUndefined();
        expect(await storage.get(visitor, 'fresh')).toBe(1);
      },
    );

    itWith('visitors', 'lists every visitor with a bin, page by page', async () => {
      const own = await open(`ns-${randomId()}`);
      const ids = Array.from({ length: 5 }, () => randomId());
      for (const id of ids) await own.set(id, 'geo', id, MINUTE);
      const found: string[] = [];
      let next: string | undefined;
      for (let pages = 0; pages < 10; pages++) {
        const page = await own.visitors?.(next === undefined ? { limit: 2 } : { next, limit: 2 });
        found.push(...(page?.ids ?? []));
        next = page?.next;
        if (next === undefined) break;
      }
      expect([...new Set(found)].sort()).toEqual([...ids].sort());
    });

    itWith('sweep', 'sweeps away expired entries, counts them, and leaves live ones', async () => {
      const visitor = randomId();
      for (const bin of ['x', 'y', 'z']) await storage.set(visitor, bin, bin, 50);
      await storage.set(visitor, 'live', 'stays', MINUTE);
      await sleep(120);
      // Other tests may share the store and leave expired entries of their own.
      expect(await storage.sweep?.()).toBeGreaterThanOrEqual(3);
      expect(await storage.get(visitor, 'x')).toBeUndefined();
      expect(await storage.get(visitor, 'live')).toBe('stays');
      if (storage.bins) expect(await storage.bins(visitor)).toEqual(['live']);
    });

    itWith('peek', 'peeks at a bin synchronously, a fresh copy, as get reads it', async () => {
      const visitor = randomId();
      await storage.set(visitor, 'geo', { city: 'Lyon' }, MINUTE);
      const peeked = storage.peek?.(visitor, 'geo') as { city: string };
      expect(peeked).toEqual({ city: 'Lyon' });
      peeked.city = 'changed';
      expect(storage.peek?.(visitor, 'geo')).toEqual({ city: 'Lyon' });
      expect(storage.peek?.(visitor, 'absent')).toBeUndefined();
    });

    describe('under visitor-state', () => {
      itWith('update', 'counts with cache.update, and reads the count back', async () => {
        const visitor = await visitorOver();
        const counts = await Promise.all(
          Array.from({ length: 10 }, () => visitor.cache.update('test:visits', (n?: number) => (n ?? 0) + 1)),
        );
        expect([...counts].sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
        expect(await storage.get(visitor.id, 'test:visits')).toBe(10);
      });

      itWithout('update', 'refuses cache.update with a ConfigError that names the store and update()', async () => {
        const visitor = await visitorOver();
        const error = await visitor.cache.update('test:visits', (n?: number) => (n ?? 0) + 1).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ConfigError);
        expect((error as Error).message).toMatch(/^store .* has no update\(\)/);
        expect(await storage.get(visitor.id, 'test:visits')).toBeUndefined();
      });

      if (canList) {
        it('forget() leaves nothing of the visitor in the storage', async () => {
          const visitor = await visitorOver();
          const id = visitor.id;
          expect(await visitor.cache.set('test:a', 1)).toBe(true);
          expect(await visitor.cache.set('test:b', { two: 2 })).toBe(true);
          await visitor.forget();
          expect(await storage.get(id, 'test:a')).toBeUndefined();
          expect(await storage.get(id, 'test:b')).toBeUndefined();
          if (storage.bins) expect(await storage.bins(id)).toEqual([]);
          if (storage.entries) expect(await storage.entries(id)).toEqual([]);
          expect(await storage.get(id, '@bins')).toBeUndefined();
        });

        it('rotate() moves every bin to the new ID and leaves nothing under the old', async () => {
          const visitor = await visitorOver();
          const from = visitor.id;
          await visitor.cache.set('test:a', 1);
          await visitor.cache.set('test:b', { two: 2 }, { ttl: '1h' });
          await visitor.rotate();
          const to = visitor.id;
          expect(to).not.toBe(from);
          expect(await visitor.cache.get('test:a')).toBe(1);
          expect(await storage.get(to, 'test:b')).toEqual({ two: 2 });
          expect(await storage.get(from, 'test:a')).toBeUndefined();
          expect(await storage.get(from, 'test:b')).toBeUndefined();
          if (storage.entries) {
            // Where the storage tells expiry, a moved bin keeps what was left of its lifetime.
            const moved = (await storage.entries(to)).find((entry) => entry.bin === 'test:b');
            expect(moved?.expiresAt).toBeLessThanOrEqual(Date.now() + 3_600_000 + 1_000);
          }
        });
      } else {
        it('refuses forget() and rotate() with a ConfigError that names bins(), erasing nothing silently', async () => {
          const visitor = await visitorOver();
          const id = visitor.id;
          await visitor.cache.set('test:a', 1);
          for (const action of [() => visitor.forget(), () => visitor.rotate()]) {
            const error = await action().catch((e: unknown) => e);
            expect(error).toBeInstanceOf(ConfigError);
            expect((error as Error).message).toMatch(/^store .* has no bins\(\)/);
          }
          expect(visitor.id).toBe(id);
          expect(await storage.get(id, 'test:a')).toBe(1);
        });
      }
    });
  });
}
