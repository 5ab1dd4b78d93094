import type { Storage, StorageOptions, StoredBin } from './storage.js';

/** The part of an unstorage 1 instance (`createStorage()`) this storage uses. */
export interface UnstorageLike {
  getItem(key: string): Promise<unknown>;
  getItems(items: string[]): Promise<{ key: string; value: unknown }[]>;
  setItem(key: string, value: unknown, options?: { ttl?: number }): Promise<void>;
  removeItem(key: string): Promise<void>;
  getKeys(base?: string): Promise<string[]>;
  /** Only for telling an unstorage instance apart from a storage. */
  mount(base: string, driver: unknown): unknown;
}

/**
 * Workers KV refuses a lifetime under 60 seconds (`expirationTtl`), and its cloudflare-kv-binding
 * driver raises one to 60 anyway. Every driver gets at least this, so no store ever refuses a
 * short bin: the exact expiry travels inside the entry and decides what a read returns.
 */
export const MIN_NATIVE_TTL_SECONDS = 60;

/**
 * Whether `store` is an unstorage instance: told apart from a storage by its
 * `getItem`/`setItem`/`getKeys`/`mount`, which no storage has.
 *
 * @example
 * ```ts
 * isUnstorage(createStorage()); // true
 * ```
 */
export function isUnstorage(store: object): store is UnstorageLike {
  const candidate = store as Partial<Record<keyof UnstorageLike, unknown>>;
  return (
    typeof candidate.getItem === 'function' &&
    typeof candidate.setItem === 'function' &&
    typeof candidate.getKeys === 'function' &&
    typeof candidate.mount === 'function'
  );
}

// unstorage rewrites keys: `/` and `\` become `:`, `::` collapses, a `?` ends the key, and a
// `.` or `..` segment is refused. Bin names may hold any visible ASCII character, so every
// character outside A-Z a-z 0-9 _ - is written as %XX: one bin, one key, nothing rewritten.
const PLAIN = /^[A-Za-z0-9_-]*$/;
const escapeChar = (char: string) => `%${char.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`;
const escapeKeyPart = (text: string): string => (PLAIN.test(text) ? text : text.replace(/[^A-Za-z0-9_-]/g, escapeChar));
const unescapeKeyPart = (text: string): string =>
  text.includes('%')
    ? text.replace(/%([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
    : text;

/** An entry as this storage writes it: the data and its expiry in ms since the epoch. */
interface Entry {
  readonly d: unknown;
  readonly e: number;
}

const isEntry = (value: unknown): value is Entry =>
  typeof value === 'object' && value !== null && typeof (value as Entry).e === 'number' && 'd' in value;

/**
 * Storage over an unstorage instance the application made, with any unstorage driver:
 * Cloudflare Workers KV (`cloudflare-kv-binding`), Upstash Redis over REST, Deno KV, Netlify
 * Blobs, Vercel KV, Redis, the file system, memory, ... Keys are
 * `namespace:visitorId:bin`, each part escaped so that unstorage's key rules change nothing.
 *
 * Each entry carries its own expiry, which decides what a read returns: many drivers have no
 * expiry of their own (memory, fs), and Workers KV keeps nothing for less than 60 s. The
 * driver is also given a lifetime, in whole seconds and at least {@link MIN_NATIVE_TTL_SECONDS}
 * (ignored by drivers without expiry), so stores that can expire entries remove them
 * themselves; `sweep()` removes them where the driver cannot. A read does not delete an expired
 * entry it meets: it could delete a bin another request has just written.
 *
 * What it has: `getMany` (unstorage's `getItems`: one round trip where the driver batches),
 * `bins` and `entries` (a listing of the keys under the visitor's prefix: a prefix list on
 * Workers KV, a scan on Redis, every key of the process on the memory driver), and `sweep`
 * (a listing of the whole namespace: meant for drivers without expiry of their own). What
 * it lacks: `add` and `update` (no driver gives an atomic set-if-absent or compare-and-set
 * through unstorage), `visitors` (unstorage lists keys all at once, with no pages) and `peek`.
 *
 * Workers KV is eventually consistent: a write is seen at once where it was made, and
 * elsewhere within about 60 s; its listing (`bins`, `sweep`) lags the same way.
 *
 * `close()` leaves the instance open: it is the application's (call its `dispose()`).
 *
 * @example
 * ```ts
 * import { createStorage } from 'unstorage';
 * import cloudflareKVBinding from 'unstorage/drivers/cloudflare-kv-binding';
 *
 * const kv = createStorage({ driver: cloudflareKVBinding({ binding: env.VISITOR_STATE }) });
 * const storage = unstorageStorage(kv, { namespace: 'vs', maxEntries: 100_000, report: console.error });
 * ```
 */
export function unstorageStorage(store: UnstorageLike, options: StorageOptions): Storage {
  const now = options.now ?? Date.now;
  const namespace = escapeKeyPart(options.namespace);
  const prefixOf = (visitorId: string) => `${namespace}:${escapeKeyPart(visitorId)}:`;
  const keyOf = (visitorId: string, bin: string) => prefixOf(visitorId) + escapeKeyPart(bin);

  const live = (value: unknown, at: number): value is Entry => isEntry(value) && value.e > at;

  const readMany = async (keys: string[]): Promise<Map<string, unknown>> => {
    const found = new Map<string, unknown>();
    if (keys.length === 0) return found;
    for (const { key, value } of await store.getItems(keys)) found.set(key, value);
    return found;
  };

  /** The visitor's live entries, by the bin names the keys under its prefix decode to. */
  const listed = async (visitorId: string): Promise<StoredBin[]> => {
    const prefix = prefixOf(visitorId);
    const keys = (await store.getKeys(prefix)).filter((key) => key.startsWith(prefix));
    const values = await readMany(keys);
    const at = now();
    const bins: StoredBin[] = [];
    for (const key of keys) {
      const value = values.get(key);
      if (live(value, at))
        bins.push({ bin: unescapeKeyPart(key.slice(prefix.length)), data: value.d, expiresAt: value.e });
    }
    return bins;
  };

  return {
    async get(visitorId, bin) {
      const value = await store.getItem(keyOf(visitorId, bin));
      return live(value, now()) ? value.d : undefined;
    },

    async getMany(visitorId, bins) {
      const keys = bins.map((bin) => keyOf(visitorId, bin));
      const values = await readMany(keys);
      const at = now();
      return keys.map((key) => {
        const value = values.get(key);
        return live(value, at) ? value.d : undefined;
      });
    },

    async set(visitorId, bin, data, ttlMs) {
      const entry: Entry = { d: data, e: now() + ttlMs };
      const ttl = Math.max(MIN_NATIVE_TTL_SECONDS, Math.ceil(ttlMs / 1000));
      await store.setItem(keyOf(visitorId, bin), entry, { ttl });
    },

    async delete(visitorId, bin) {
      await store.removeItem(keyOf(visitorId, bin));
    },

    async bins(visitorId) {
      return (await listed(visitorId)).map((entry) => entry.bin);
    },

    entries: listed,

    async sweep() {
      const base = `${namespace}:`;
      const keys = (await store.getKeys(base)).filter((key) => key.startsWith(base));
      let removed = 0;
      // The values in slices: a large namespace's keys are listed at once, its data is not.
      for (let start = 0; start < keys.length; start += 500) {
        const slice = keys.slice(start, start + 500);
        const values = await readMany(slice);
        const at = now();
        const expired = slice.filter((key) => {
          const value = values.get(key);
          return isEntry(value) && value.e <= at;
        });
        await Promise.all(expired.map((key) => store.removeItem(key)));
        removed += expired.length;
      }
      return removed;
    },
  };
}
