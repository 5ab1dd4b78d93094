import { type Duration, toMs } from '../duration.js';
import type { RecentMap } from '../recent-map.js';
import type { StoreOption } from './registry.js';
import type { BinStore, Router, StoreHandle, StoresOf } from './router.js';
import type { HeldBin } from './storage.js';
import { checkBinName, copyData, serializeBin } from './value.js';

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

/** What `getMany(bins)` resolves to: each bin's data type, or `undefined`. */
export type ManyData<B extends readonly BinRef[]> = { -readonly [K in keyof B]: DataOf<B[K]> | undefined };

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
  getMany<const B extends readonly BinRef[]>(bins: B): Promise<ManyData<B>>;
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
  /** Bins named by a string, each checked and routed once rather than on every call. */
  readonly named: RecentMap<string, Routed>;
}

export interface Routed {
  readonly name: string;
  readonly handle: StoreHandle;
  readonly ttlMs: number;
}

/** A bin as this request knows it: its JSON text, a store's held bin, or the text on its way. */
type Known = string | HeldBin | undefined | Promise<string | undefined>;
type Settled = Exclude<Known, Promise<unknown>>;

/** A fresh copy of the bin's data, for the caller to keep or change. */
const dataOf = (known: Settled): unknown =>
  known === undefined ? undefined : typeof known === 'string' ? JSON.parse(known) : copyData(known.data);

const textOf = (known: Settled): string | undefined => (typeof known === 'object' ? known.json : known);

/**
 * The bin cache of one visitor for one request. A class, made once per request, so that its
 * methods live on the prototype instead of being a dozen closures a request for V8 to collect.
 */
class RequestBinCache implements BinCache {
  readonly #owner: CacheOwner;
  readonly #settings: CacheSettings;
  readonly #stores: StoresOf;
  // Each bin as the store gave it: one store call per bin per request, shared by concurrent readers.
  // Most requests read one bin, so the first is kept in two fields and a Map is made for a second.
  #firstName: string | undefined;
  #firstKnown: Known;
  #more: Map<string, Known> | undefined;

  constructor(owner: CacheOwner, settings: CacheSettings, stores: StoresOf) {
    this.#owner = owner;
    this.#settings = settings;
    this.#stores = stores;
  }

  // Not async: a bin read from a store in this process costs one promise, the one returned.
  get<T>(ref: BinRef<T>): Promise<T | undefined> {
    try {
      const known = this.#load(this.#route(ref));
      return (known instanceof Promise ? known.then(dataOf) : Promise.resolve(dataOf(known))) as Promise<T | undefined>;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async getMany<const B extends readonly BinRef[]>(refs: B): Promise<ManyData<B>> {
    const routed = refs.map((ref) => this.#route(ref));
    const groups = new Map<StoreHandle, Routed[]>();
    for (const r of routed) {
      if (this.#knows(r.name)) continue;
      const group = groups.get(r.handle);
      if (group) {
        if (!group.some((g) => g.name === r.name)) group.push(r);
      } else groups.set(r.handle, [r]);
    }
    const id = this.#owner.id;
    for (const [handle, group] of groups) {
      const names = group.map((r) => r.name);
      const many = this.#stores.of(handle).then((store) => store.getManyText(id, names));
      for (const [i, r] of group.entries())
        this.#remember(
          r.name,
          many.then((found) => found[i]),
        );
    }
    const known = await Promise.all(routed.map((r) => this.#load(r)));
    return known.map(dataOf) as never;
  }

  async set<T>(ref: BinRef<T>, data: T, options: SetOptions = {}): Promise<void> {
    const routed = this.#route(ref);
    const json = serializeBin(routed.name, data, this.#settings.maxValueBytes);
    const explicitTtl = options.ttl === undefined ? undefined : toMs(options.ttl, `ttl of bin '${routed.name}'`);
    if (explicitTtl === undefined && this.#knows(routed.name) && textOf(await this.#known(routed.name)) === json)
      return;
    const ttlMs = explicitTtl ?? routed.ttlMs;
    const { id, maxTtl } = this.#owner;
    const capped = maxTtl === undefined ? ttlMs : Math.min(ttlMs, maxTtl);
    await this.#everywhere(routed, (store, to) => store.set(to, routed.name, data, to === id ? capped : ttlMs));
    this.#remember(routed.name, json);
  }

  async delete(ref: BinRef): Promise<void> {
    const routed = this.#route(ref);
    await this.#everywhere(routed, (store, id) => store.delete(id, routed.name));
    this.#remember(routed.name, undefined);
  }

  #route(ref: BinRef): Routed {
    if (typeof ref !== 'string') return routeOf(ref.name, ref, this.#settings);
    let routed = this.#settings.named.get(ref);
    if (!routed) {
      routed = routeOf(ref, undefined, this.#settings);
      this.#settings.named.set(ref, routed);
    }
    return routed;
  }

  #load(routed: Routed): Known {
    if (this.#knows(routed.name)) return this.#known(routed.name);
    const id = this.#owner.id;
    const plain = routed.handle.plain;
    const known = plain
      ? plain.getNow(id, routed.name)
      : this.#stores.of(routed.handle).then((store) => store.getText(id, routed.name));
    this.#remember(routed.name, known);
    return known;
  }

  #knows(name: string): boolean {
    return name === this.#firstName || this.#more?.has(name) === true;
  }

  #known(name: string): Known {
    return name === this.#firstName ? this.#firstKnown : this.#more?.get(name);
  }

  #remember(name: string, known: Known): void {
    if (this.#firstName === undefined || name === this.#firstName) {
      this.#firstName = name;
      this.#firstKnown = known;
    } else {
      this.#more ??= new Map();
      this.#more.set(name, known);
    }
  }

  async #everywhere(routed: Routed, write: (store: BinStore, id: string) => Promise<void>): Promise<void> {
    const store = await this.#stores.of(routed.handle);
    const { id, own } = this.#owner;
    await Promise.all([write(store, id), own === undefined ? undefined : write(store, own)]);
  }
}

/** Checks a bin's name and finds its store and lifetime: a typed bin's own, a `bins` rule's, or the defaults. */
function routeOf(name: string, typed: Bin<unknown> | undefined, settings: CacheSettings): Routed {
  checkBinName(name);
  const routed = settings.router.route(name, typed?.store);
  const ttl = typed?.ttl !== undefined ? toMs(typed.ttl, `bin '${name}' ttl`) : routed.ttlMs;
  return { name, handle: routed.handle, ttlMs: ttl ?? settings.defaultTtlMs };
}

/** The bin cache of one visitor for one request. */
export function createBinCache(owner: CacheOwner, settings: CacheSettings, stores: StoresOf): BinCache {
  return new RequestBinCache(owner, settings, stores);
}
