import { LRUCache } from 'lru-cache';
import { inProcess, readsFromJsonText, type StorageOptions, type TextStorage } from './storage.js';

interface Entry {
  readonly visitorId: string;
  readonly bin: string;
  readonly json: string;
}

const DEFAULT_MAX_ENTRIES = 100_000;

// The length prefix keeps ('a:b', 'c') and ('a', 'b:c') apart whatever the IDs contain.
const keyOf = (visitorId: string, bin: string): string => `${visitorId.length}:${visitorId}:${bin}`;

/**
 * Storage in this process's memory: an LRU bounded by `maxEntries`, each entry with its
 * own lifetime. Nothing is shared between processes and everything is lost at restart,
 * which suits one server and development.
 *
 * `sweep()` removes the expired entries (an expired entry is also removed when read);
 * `bins()` reads an index by visitor, so it does not scan the whole cache.
 *
 * @example
 * ```ts
 * const storage = memoryStorage({ maxEntries: 10_000 });
 * await storage.set(visitorId, 'mymod:geo', { city: 'Lyon' }, 60_000);
 * ```
 */
export function memoryStorage(options: Partial<StorageOptions> = {}): TextStorage {
  const byVisitor = new Map<string, Set<string>>();

  const cache = new LRUCache<string, Entry>({
    max: options.maxEntries ?? DEFAULT_MAX_ENTRIES,
    dispose(entry, _key, reason) {
      // 'set' replaces the value of a key that stays: the bin is still there.
      if (reason === 'set') return;
      const bins = byVisitor.get(entry.visitorId);
      if (!bins) return;
      bins.delete(entry.bin);
      if (bins.size === 0) byVisitor.delete(entry.visitorId);
    },
  });

  const put = (visitorId: string, bin: string, data: unknown, ttlMs: number) => {
    cache.set(keyOf(visitorId, bin), { visitorId, bin, json: JSON.stringify(data) }, { ttl: ttlMs });
    let bins = byVisitor.get(visitorId);
    if (!bins) {
      bins = new Set();
      byVisitor.set(visitorId, bins);
    }
    bins.add(bin);
  };

  const textOf = (visitorId: string, bin: string) => cache.get(keyOf(visitorId, bin))?.json;

  return {
    [inProcess]: true,
    ...readsFromJsonText({
      get: async (visitorId, bin) => textOf(visitorId, bin),
      getMany: async (visitorId, bins) => bins.map((bin) => textOf(visitorId, bin)),
    }),

    async set(visitorId, bin, data, ttlMs) {
      put(visitorId, bin, data, ttlMs);
    },

    async add(visitorId, bin, data, ttlMs) {
      if (cache.get(keyOf(visitorId, bin)) !== undefined) return false;
      put(visitorId, bin, data, ttlMs);
      return true;
    },

    async delete(visitorId, bin) {
      cache.delete(keyOf(visitorId, bin));
    },

    async bins(visitorId) {
      const bins = byVisitor.get(visitorId);
      if (!bins) return [];
      return [...bins].filter((bin) => cache.has(keyOf(visitorId, bin)));
    },

    async sweep() {
      const before = cache.size;
      cache.purgeStale();
      return before - cache.size;
    },

    async close() {
      cache.clear();
    },
  };
}
