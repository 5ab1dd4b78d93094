import { ConfigError } from '../errors.js';
import type { Capability, Storage } from './storage.js';

/** A bin as the library lists it: `expiresAt` is `undefined` where the store cannot tell it. */
export interface ListedBin {
  readonly bin: string;
  readonly data: unknown;
  readonly expiresAt: number | undefined;
}

/**
 * Every operation the library performs on a store: the store's own method where it has one,
 * else the fallback written here, else a `ConfigError` that names the store and the method.
 */
export interface CompleteStorage {
  get(visitorId: string, bin: string): Promise<unknown>;
  set(visitorId: string, bin: string, data: unknown, ttlMs: number): Promise<void>;
  delete(visitorId: string, bin: string): Promise<void>;
  getMany(visitorId: string, bins: readonly string[]): Promise<unknown[]>;
  add(visitorId: string, bin: string, data: unknown, ttlMs: number): Promise<boolean>;
  update(visitorId: string, bin: string, next: (current: unknown) => unknown, ttlMs: number): Promise<unknown>;
  bins(visitorId: string): Promise<string[]>;
  entries(visitorId: string): Promise<ListedBin[]>;
  /** Whether the store itself has the method (not a fallback). */
  has(capability: Capability): boolean;
}

/**
 * The bin-name index the library keeps for a store that cannot list a visitor's bins (no
 * `bins`, no `entries`) but can update a bin atomically: one `@bins` entry per visitor, the
 * names of the bins written to it. It is written through the store's `update` before the bin
 * itself, so two requests that write two bins of one visitor at once both land in it, and a
 * crash in between leaves a name too many, never a bin the index misses.
 */
export const INDEX_BIN = '@bins';
// The index outlives every bin it names: it is written with the longer of this and the bin's lifetime.
const INDEX_TTL_MS = 400 * 86_400_000;

export interface FallbackOptions {
  /**
   * The storage lives in one request (a request-scoped store's binding): no other process
   * sees its state, so a read-then-write serialised within the binding is atomic.
   */
  readonly local?: boolean;
}

/**
 * The fallbacks for a storage's missing optional methods, written once:
 *
 * | missing | fallback |
 * | --- | --- |
 * | `getMany` | one `get` per bin, in parallel |
 * | `entries` | `bins`, then `getMany`; the expiry is unknown, and a bin moved from there (rotate, migrate) starts the lifetime its new home gives it |
 * | `bins` | the names in `entries`; else the `@bins` index kept through `update`; else a `ConfigError` |
 * | `add` | `update` that keeps a present bin; in a request-scoped store a serialised read-then-write; else a `ConfigError` |
 * | `update` | in a request-scoped store a serialised read-then-write; else a `ConfigError` |
 *
 * A get-then-set is never used where two servers could interleave: it would lose writes
 * silently (an `update` that loses increments, a `link()` that two logins both win).
 *
 * @example
 * ```ts
 * const complete = withFallbacks(myStorage, "store 'file:///var/state'");
 * await complete.bins(visitorId); // through myStorage.bins, or the library's index, or a ConfigError
 * ```
 */
export function withFallbacks(storage: Storage, label: string, options: FallbackOptions = {}): CompleteStorage {
  const local = options.local === true;
  const own = (capability: Capability) => typeof storage[capability] === 'function';
  const missing = (capability: Capability, needed: string, instead: string) =>
    new ConfigError(
      `${label} has no ${capability}(): ${needed}; ${instead}, or use a store that has it (memory, SQLite, PostgreSQL, Redis)`,
    );

  // Within one binding, a read-then-write that no other caller can interleave.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(run: () => Promise<T>): Promise<T> => {
    const result = queue.then(run);
    queue = result.catch(() => undefined);
    return result;
  };

  const getMany = (visitorId: string, bins: readonly string[]): Promise<unknown[]> =>
    storage.getMany ? storage.getMany(visitorId, bins) : Promise.all(bins.map((bin) => storage.get(visitorId, bin)));

  const readThenWrite = (visitorId: string, bin: string, next: (current: unknown) => unknown, ttlMs: number) =>
    serial(async () => {
      const data = next(await storage.get(visitorId, bin));
      if (data === undefined) await storage.delete(visitorId, bin);
      else await storage.set(visitorId, bin, data, ttlMs);
      return data;
    });

  const rawUpdate = (visitorId: string, bin: string, next: (current: unknown) => unknown, ttlMs: number) => {
    if (storage.update) return storage.update(visitorId, bin, next, ttlMs);
    if (local) return readThenWrite(visitorId, bin, next, ttlMs);
    return Promise.reject(
      missing(
        'update',
        'cache.update() needs it for an atomic read-modify-write',
        'use get() and set() where a lost update does no harm',
      ),
    );
  };

  const indexed = !own('bins') && !own('entries') && own('update');
  const index = (visitorId: string, bin: string, ttlMs: number): Promise<unknown> =>
    bin === INDEX_BIN
      ? Promise.resolve()
      : (storage.update as NonNullable<Storage['update']>)(
          visitorId,
          INDEX_BIN,
          (names) => {
            const list = Array.isArray(names) ? (names as string[]) : [];
            return list.includes(bin) ? list : [...list, bin];
          },
          Math.max(ttlMs, INDEX_TTL_MS),
        );

  const bins = async (visitorId: string): Promise<string[]> => {
    if (storage.bins) return storage.bins(visitorId);
    if (storage.entries) return (await storage.entries(visitorId)).map((entry) => entry.bin);
    if (!indexed) {
      throw missing(
        'bins',
        'forget(), rotate() and link() need it to find every bin of a visitor',
        'add bins() (or entries(), or update() for the index visitor-state keeps)',
      );
    }
    const names = await storage.get(visitorId, INDEX_BIN);
    const listed = Array.isArray(names) ? (names as string[]) : [];
    if (listed.length === 0) return names === undefined ? [] : [INDEX_BIN];
    const data = await getMany(visitorId, listed);
    return [...listed.filter((_, i) => data[i] !== undefined), INDEX_BIN];
  };

  return {
    get: (visitorId, bin) => storage.get(visitorId, bin),
    getMany,
    set: indexed
      ? async (visitorId, bin, data, ttlMs) => {
          await index(visitorId, bin, ttlMs);
          await storage.set(visitorId, bin, data, ttlMs);
        }
      : (visitorId, bin, data, ttlMs) => storage.set(visitorId, bin, data, ttlMs),
    delete: (visitorId, bin) => storage.delete(visitorId, bin),
    async add(visitorId, bin, data, ttlMs) {
      if (indexed) await index(visitorId, bin, ttlMs);
      if (storage.add) return storage.add(visitorId, bin, data, ttlMs);
      if (storage.update || local) {
        // The last call of `next` is the one that counted: it says whether the bin was absent.
        let stored = false;
        await rawUpdate(
          visitorId,
          bin,
          (current) => {
            stored = current === undefined;
            return stored ? data : current;
          },
          ttlMs,
        );
        return stored;
      }
      throw missing('add', 'link() needs it so that two logins of one user agree on one visitor', 'add add()');
    },
    async update(visitorId, bin, next, ttlMs) {
      if (indexed) await index(visitorId, bin, ttlMs);
      return rawUpdate(visitorId, bin, next, ttlMs);
    },
    bins,
    async entries(visitorId) {
      if (storage.entries) return storage.entries(visitorId);
      const names = await bins(visitorId);
      const data = await getMany(visitorId, names);
      return names.flatMap((bin, i) => (data[i] === undefined ? [] : [{ bin, data: data[i], expiresAt: undefined }]));
    },
    has: own,
  };
}
