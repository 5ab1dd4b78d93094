import { type Duration, toMs } from '../duration.js';
import type { StoreOption } from './registry.js';
import type { BinStore, Router, StoreHandle, StoresOf } from './router.js';
import { checkBinName, serializeBin } from './value.js';

/** A bin with its data type carried through `get` and `set`; made by {@link bin}. */
export interface Bin<T> {
  readonly name: string;
  readonly ttl?: Duration;
  readonly store?: StoreOption;
  /** Carries `T`; never set. */
  readonly __data?: T;
}

/** A bin by name or by typed handle. */
export type BinRef<T = unknown> = string | Bin<T>;

type DataOf<B> = B extends Bin<infer T> ? T : unknown;

/** Options of {@link BinCache.set}. */
export interface SetOptions {
  /**
   * How long the bin lives. Given explicitly, it also makes a `set` of an unchanged value
   * write again, to extend the lifetime.
   * @default the bin's, the matching `bins` rule's, or the `ttl` option's
   */
  ttl?: Duration;
}

/** The visitor's small state, bin by bin. Reads are lazy and shared within a request. */
export interface BinCache {
  /** The bin's data (a fresh copy), or `undefined` when absent, expired, or the store is down. */
  get<T = unknown>(bin: BinRef<T>): Promise<T | undefined>;
  /** Stores data JSON can carry; rejects with `BinError` for bad input, `StorageError` when the store fails. */
  set<T>(bin: BinRef<T>, data: T, options?: SetOptions): Promise<void>;
  delete(bin: BinRef): Promise<void>;
  /** Several bins, in one round trip per store. */
  getMany<const B extends readonly BinRef[]>(bins: B): Promise<{ -readonly [K in keyof B]: DataOf<B[K]> | undefined }>;
}

/**
 * A typed bin: its name, and optionally its own lifetime and store.
 *
 * @example
 * ```ts
 * const geo = bin<{ city: string }>('mymod:geo', { ttl: '7d' });
 * await visitor.cache.set(geo, { city: 'Lyon' });
 * (await visitor.cache.get(geo))?.city;
 * ```
 */
export function bin<T>(name: string, options: { ttl?: Duration; store?: StoreOption } = {}): Bin<T> {
  checkBinName(name);
  if (options.ttl !== undefined) toMs(options.ttl, `bin '${name}' ttl`);
  return { name, ...options };
}

/** Who the cache writes for. */
export interface CacheOwner {
  readonly id: string;
  /** The client's own ID when `id` is shared: writes go there too. */
  readonly own: string | undefined;
  readonly maxTtl: number | undefined;
}

export interface CacheSettings {
  readonly router: Router;
  readonly defaultTtlMs: number;
  readonly maxValueBytes: number;
}

interface Routed {
  readonly name: string;
  readonly handle: StoreHandle;
  readonly ttlMs: number;
}

/** The bin cache of one visitor for one request. */
export function createBinCache(owner: CacheOwner, settings: CacheSettings, storeOf: StoresOf): BinCache {
  const { router } = settings;
  // JSON text per bin, as the store has it: one store call per bin per request, shared by concurrent readers.
  const memo = new Map<string, Promise<string | undefined>>();

  const route = (ref: BinRef): Routed => {
    const name = typeof ref === 'string' ? ref : ref.name;
    checkBinName(name);
    const routed = router.route(name, typeof ref === 'string' ? undefined : ref.store);
    const ttl = typeof ref !== 'string' && ref.ttl !== undefined ? toMs(ref.ttl, `bin '${name}' ttl`) : routed.ttlMs;
    return { name, handle: routed.handle, ttlMs: ttl ?? settings.defaultTtlMs };
  };

  const parse = (json: string | undefined) => (json === undefined ? undefined : JSON.parse(json));

  const load = (routed: Routed): Promise<string | undefined> => {
    let pending = memo.get(routed.name);
    if (!pending) {
      pending = storeOf(routed.handle).then((store) => store.getText(owner.id, routed.name));
      memo.set(routed.name, pending);
    }
    return pending;
  };

  const everywhere = async (routed: Routed, write: (store: BinStore, id: string) => Promise<void>) => {
    const store = await storeOf(routed.handle);
    await Promise.all([write(store, owner.id), owner.own === undefined ? undefined : write(store, owner.own)]);
  };

  return {
    async get(ref) {
      return parse(await load(route(ref)));
    },

    async getMany(refs) {
      const routed = refs.map(route);
      const groups = new Map<StoreHandle, Routed[]>();
      for (const r of routed) {
        if (memo.has(r.name)) continue;
        const group = groups.get(r.handle);
        if (group) {
          if (!group.some((g) => g.name === r.name)) group.push(r);
        } else groups.set(r.handle, [r]);
      }
      for (const [handle, group] of groups) {
        const names = group.map((r) => r.name);
        const many = storeOf(handle).then((store) => store.getManyText(owner.id, names));
        for (const [i, r] of group.entries())
          memo.set(
            r.name,
            many.then((found) => found[i]),
          );
      }
      const texts = await Promise.all(routed.map(load));
      return texts.map(parse) as never;
    },

    async set(ref, data, options = {}) {
      const routed = route(ref);
      const json = serializeBin(routed.name, data, settings.maxValueBytes);
      const explicitTtl = options.ttl === undefined ? undefined : toMs(options.ttl, `ttl of bin '${routed.name}'`);
      const known = memo.get(routed.name);
      if (explicitTtl === undefined && known !== undefined && (await known) === json) return;
      const ttlMs = explicitTtl ?? routed.ttlMs;
      const capped = owner.maxTtl === undefined ? ttlMs : Math.min(ttlMs, owner.maxTtl);
      await everywhere(routed, (store, id) => store.set(id, routed.name, data, id === owner.id ? capped : ttlMs));
      memo.set(routed.name, Promise.resolve(json));
    },

    async delete(ref) {
      const routed = route(ref);
      await everywhere(routed, (store, id) => store.delete(id, routed.name));
      memo.set(routed.name, Promise.resolve(undefined));
    },
  };
}
