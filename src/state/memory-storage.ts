import { type HeldBin, inProcess, jsonText, type StorageOptions, type TextStorage } from './storage.js';
import { copyData } from './value.js';

interface Held extends HeldBin {
  readonly expires: number;
}

type Bins = Map<string, Held>;

const DEFAULT_MAX_ENTRIES = 100_000;

/**
 * Storage in this process's memory: at most `maxEntries` bins (two at least), each with its own lifetime.
 * Nothing is shared between processes and everything is lost at restart, which suits one
 * server and development.
 *
 * Bins are kept by visitor, then by name, so a read is two `Map.get`s on strings the request
 * already has, with no key to build. The bound works by generations: visitors are added to a
 * young generation, a visitor read or written in the old one moves to the young one, and when
 * the young one holds half of `maxEntries` bins the old one is dropped whole. So the visitors
 * least recently used go first, as in an LRU, without an LRU's bookkeeping on every read.
 * An expired bin is removed when read, and by `sweep()`.
 *
 * @example
 * ```ts
 * const storage = memoryStorage({ maxEntries: 10_000 });
 * await storage.set(visitorId, 'mymod:geo', { city: 'Lyon' }, 60_000);
 * ```
 */
export function memoryStorage(options: Partial<StorageOptions> = {}): TextStorage {
  // Each generation holds at most half of the bound, so the two together hold at most all of it.
  const half = Math.max(1, Math.floor((options.maxEntries ?? DEFAULT_MAX_ENTRIES) / 2));
  let young = new Map<string, Bins>();
  let old = new Map<string, Bins>();
  let youngEntries = 0;

  /** The visitor's bins, moved to the young generation; `undefined` when it has none and `create` is false. */
  const binsOf = (visitorId: string, create: boolean): Bins | undefined => {
    const current = young.get(visitorId);
    if (current) return current;
    let bins = old.get(visitorId);
    if (!bins && !create) return undefined;
    if (bins) old.delete(visitorId);
    else bins = new Map();
    if (youngEntries + Math.max(1, bins.size) > half) newGeneration();
    young.set(visitorId, bins);
    youngEntries += bins.size;
    return bins;
  };

  const newGeneration = () => {
    old = young;
    young = new Map();
    youngEntries = 0;
  };

  const remove = (visitorId: string, bins: Bins, bin: string) => {
    if (!bins.delete(bin)) return;
    youngEntries--;
    if (bins.size === 0) young.delete(visitorId);
  };

  const read = (visitorId: string, bin: string): Held | undefined => {
    const bins = binsOf(visitorId, false);
    const held = bins?.get(bin);
    if (!bins || !held) return undefined;
    if (held.expires > Date.now()) return held;
    remove(visitorId, bins, bin);
    return undefined;
  };

  const put = (visitorId: string, bin: string, data: unknown, ttlMs: number) => {
    const json = JSON.stringify(data);
    const bins = binsOf(visitorId, true) as Bins;
    if (!bins.has(bin)) {
      if (bins.size >= half) {
        // One visitor alone fills a generation: its oldest bin makes room.
        remove(visitorId, bins, bins.keys().next().value as string);
      } else if (youngEntries >= half) {
        newGeneration();
        old.delete(visitorId);
        young.set(visitorId, bins);
        youngEntries = bins.size;
      }
      youngEntries++;
    }
    // Kept as text for the bin cache and parsed once for copies: neither is ever handed out as it is.
    bins.set(bin, { json, data: JSON.parse(json), expires: Date.now() + ttlMs });
  };

  const textOf = (visitorId: string, bin: string) => read(visitorId, bin)?.json;

  return {
    [inProcess]: { read },
    [jsonText]: {
      get: async (visitorId, bin) => textOf(visitorId, bin),
      getMany: async (visitorId, bins) => bins.map((bin) => textOf(visitorId, bin)),
    },

    async get(visitorId, bin) {
      return copyData(read(visitorId, bin)?.data);
    },

    peek: (visitorId, bin) => copyData(read(visitorId, bin)?.data),

    async getMany(visitorId, bins) {
      return bins.map((bin) => copyData(read(visitorId, bin)?.data));
    },

    async set(visitorId, bin, data, ttlMs) {
      put(visitorId, bin, data, ttlMs);
    },

    async add(visitorId, bin, data, ttlMs) {
      if (read(visitorId, bin) !== undefined) return false;
      put(visitorId, bin, data, ttlMs);
      return true;
    },

    async delete(visitorId, bin) {
      const bins = binsOf(visitorId, false);
      if (bins) remove(visitorId, bins, bin);
    },

    async bins(visitorId) {
      const bins = binsOf(visitorId, false);
      if (!bins) return [];
      return [...bins.keys()].filter((bin) => read(visitorId, bin) !== undefined);
    },

    async sweep() {
      const now = Date.now();
      let removed = 0;
      for (const generation of [young, old]) {
        for (const [visitorId, bins] of generation) {
          for (const [bin, held] of bins) {
            if (held.expires > now) continue;
            bins.delete(bin);
            removed++;
            if (generation === young) youngEntries--;
          }
          if (bins.size === 0) generation.delete(visitorId);
        }
      }
      return removed;
    },

    async close() {
      young = new Map();
      old = new Map();
      youngEntries = 0;
    },
  };
}
