import { ConfigError, StorageError } from '../errors.js';
import type { Storage, StorageOptions, StoredBin } from './storage.js';
import { copyData } from './value.js';

const DEFAULT_MAX_ENTRIES = 100_000;
const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
// What a bin and a visitor cost beyond their text: Map entries, the record, the name strings' headers.
const BIN_OVERHEAD = 64;
const VISITOR_OVERHEAD = 128;
const DEFAULT_PAGE = 1_000;
const MAX_PAGE = 10_000;

interface Held {
  /** Parsed from the JSON text once, at `set`; never handed out as it is. */
  readonly data: unknown;
  readonly expires: number;
  readonly bytes: number;
}

interface Visitor {
  readonly bins: Map<string, Held>;
  bytes: number;
  /** Read or written since the eviction last passed it: it gets a second chance. */
  used: boolean;
}

/** Options of {@link memoryStorage}. */
export interface MemoryStorageOptions {
  /** At most this many bins in all. @default 100_000 */
  readonly maxEntries?: number;
  /**
   * At most about this many bytes held: each bin counts the length of its JSON text, its
   * name and a fixed overhead; each visitor its ID and a fixed overhead. The heap holds the
   * parsed data, which for typical bins is one to three times its JSON text.
   * @default 64 MiB
   */
  readonly maxBytes?: number;
  /** The clock that decides expiry. @default Date.now */
  readonly now?: () => number;
}

const positive = (value: number | undefined, fallback: number, name: string): number => {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 1)
    throw new ConfigError(`${name} of the memory store must be a positive number, not ${value}`);
  return Math.floor(value);
};

/**
 * Storage in this process's memory, bounded in bins (`maxEntries`) and in bytes
 * (`maxBytes`): when a write would pass either bound, the visitors least recently read or
 * written are dropped first, whole (as the CLOCK algorithm approximates it: a visitor used
 * since the eviction last came by is passed over once). Each bin is held once, as its data parsed from JSON, and
 * every read hands out a fresh copy. Nothing is shared between processes and everything is
 * lost at restart, which suits one server and development.
 *
 * Everything the storage contract names is here, `peek` included: one process and no I/O make
 * `update` and `add` atomic by themselves. An expired bin is removed when read, and by
 * `sweep()`.
 *
 * @example
 * ```ts
 * const storage = memoryStorage({ maxEntries: 10_000, maxBytes: 16 * 1024 * 1024 });
 * await storage.set(visitorId, 'mymod:geo', { city: 'Lyon' }, 60_000);
 * storage.peek?.(visitorId, 'mymod:geo'); // { city: 'Lyon' }
 * ```
 */
export function memoryStorage(options: MemoryStorageOptions | Partial<StorageOptions> = {}): Storage {
  const maxEntries = positive(options.maxEntries, DEFAULT_MAX_ENTRIES, 'maxEntries');
  const maxBytes = positive(options.maxBytes, DEFAULT_MAX_BYTES, 'maxBytes');
  const now = options.now ?? Date.now;
  // Oldest first, as a Map keeps insertion order. A read only marks the visitor used; the
  // eviction moves a used visitor to the end instead of dropping it (the CLOCK algorithm), so
  // the least recently used go first without a reorder on every read.
  let visitors = new Map<string, Visitor>();
  let entries = 0;
  let bytes = 0;

  const visitorOf = (visitorId: string): Visitor | undefined => {
    const visitor = visitors.get(visitorId);
    if (visitor) visitor.used = true;
    return visitor;
  };

  const dropVisitor = (visitorId: string, visitor: Visitor) => {
    visitors.delete(visitorId);
    entries -= visitor.bins.size;
    bytes -= visitor.bytes;
  };

  const remove = (visitorId: string, visitor: Visitor, bin: string) => {
    const held = visitor.bins.get(bin);
    if (!held) return;
    visitor.bins.delete(bin);
    visitor.bytes -= held.bytes;
    bytes -= held.bytes;
    entries--;
    if (visitor.bins.size === 0) dropVisitor(visitorId, visitor);
  };

  const read = (visitorId: string, bin: string): Held | undefined => {
    const visitor = visitorOf(visitorId);
    const held = visitor?.bins.get(bin);
    if (!visitor || !held) return undefined;
    if (held.expires > now()) return held;
    remove(visitorId, visitor, bin);
    return undefined;
  };

  /** Drops the least recently used visitors, then the writer's own oldest bins, until both bounds hold. */
  const makeRoom = (writer: string, keep: string) => {
    // A visitor moved to the end comes round again in this same loop, unmarked: it ends.
    for (const [visitorId, visitor] of visitors) {
      if (entries <= maxEntries && bytes <= maxBytes) return;
      if (visitorId === writer) continue;
      if (visitor.used) {
        visitor.used = false;
        visitors.delete(visitorId);
        visitors.set(visitorId, visitor);
      } else dropVisitor(visitorId, visitor);
    }
    const own = visitors.get(writer);
    if (!own) return;
    for (const bin of own.bins.keys()) {
      if (entries <= maxEntries && bytes <= maxBytes) return;
      if (bin !== keep) remove(writer, own, bin);
    }
  };

  const put = (visitorId: string, bin: string, data: unknown, ttlMs: number) => {
    const json = JSON.stringify(data);
    if (json === undefined) throw new StorageError(`bin '${bin}': ${typeof data} is not data JSON can carry`);
    const size = json.length + bin.length + BIN_OVERHEAD;
    if (size + visitorId.length + VISITOR_OVERHEAD > maxBytes)
      throw new StorageError(
        `bin '${bin}' takes ${size} bytes, more than the memory store's whole maxBytes of ${maxBytes}`,
      );
    const held: Held = { data: JSON.parse(json), expires: now() + ttlMs, bytes: size };
    let visitor = visitorOf(visitorId);
    if (!visitor) {
      visitor = { bins: new Map(), bytes: visitorId.length + VISITOR_OVERHEAD, used: false };
      visitors.set(visitorId, visitor);
      bytes += visitor.bytes;
    }
    const old = visitor.bins.get(bin);
    if (old) {
      visitor.bytes -= old.bytes;
      bytes -= old.bytes;
    } else entries++;
    visitor.bins.set(bin, held);
    visitor.bytes += size;
    bytes += size;
    if (entries > maxEntries || bytes > maxBytes) makeRoom(visitorId, bin);
  };

  const peek = (visitorId: string, bin: string): unknown => {
    const held = read(visitorId, bin);
    return held === undefined ? undefined : copyData(held.data);
  };

  const live = (visitorId: string): [string, Held][] => {
    const visitor = visitorOf(visitorId);
    if (!visitor) return [];
    const at = now();
    return [...visitor.bins].filter(([, held]) => held.expires > at);
  };

  return {
    peek,

    async get(visitorId, bin) {
      return peek(visitorId, bin);
    },

    async getMany(visitorId, bins) {
      return bins.map((bin) => peek(visitorId, bin));
    },

    async set(visitorId, bin, data, ttlMs) {
      put(visitorId, bin, data, ttlMs);
    },

    async add(visitorId, bin, data, ttlMs) {
      if (read(visitorId, bin) !== undefined) return false;
      put(visitorId, bin, data, ttlMs);
      return true;
    },

    // Atomic as it is: nothing else runs in this process between the read and the write.
    async update(visitorId, bin, next, ttlMs) {
      const result = next(peek(visitorId, bin));
      if (result === undefined) {
        const visitor = visitors.get(visitorId);
        if (visitor) remove(visitorId, visitor, bin);
      } else put(visitorId, bin, result, ttlMs);
      return result;
    },

    async delete(visitorId, bin) {
      const visitor = visitors.get(visitorId);
      if (visitor) remove(visitorId, visitor, bin);
    },

    async bins(visitorId) {
      return live(visitorId).map(([bin]) => bin);
    },

    async entries(visitorId) {
      return live(visitorId).map(
        ([bin, held]): StoredBin => ({ bin, data: copyData(held.data), expiresAt: held.expires }),
      );
    },

    // Pages in the order of the IDs, which stays put while visitors are used and dropped.
    async visitors(page = {}) {
      const limit = Math.min(MAX_PAGE, Math.max(1, Math.floor(page.limit ?? DEFAULT_PAGE)));
      const after = page.next ?? '';
      const at = now();
      const ids = [...visitors]
        .filter(([id, visitor]) => id > after && [...visitor.bins.values()].some((held) => held.expires > at))
        .map(([id]) => id)
        .sort()
        .slice(0, limit);
      const last = ids[ids.length - 1];
      return ids.length === limit && last !== undefined ? { ids, next: last } : { ids };
    },

    async sweep() {
      const at = now();
      let removed = 0;
      for (const [visitorId, visitor] of visitors) {
        for (const [bin, held] of visitor.bins) {
          if (held.expires > at) continue;
          remove(visitorId, visitor, bin);
          removed++;
        }
      }
      return removed;
    },

    async close() {
      visitors = new Map();
      entries = 0;
      bytes = 0;
    },
  };
}
