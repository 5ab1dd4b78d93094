import { type Duration, toMs } from '../duration.js';
import { StorageError } from '../errors.js';
import type { RecentMap } from '../recent-map.js';
import type { StoreOption } from './registry.js';
import { type BinStore, declareStore, type Router, type StoreHandle, type StoresOf } from './router.js';
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

/** Options of {@link BinCache.set} and {@link BinCache.update}. */
export interface SetOptions {
  /**
   * How long the bin lives. Given explicitly, it also makes a `set` of an unchanged value
   * write again, to extend the lifetime.
   * @default the bin's, the matching `bins` rule's, or the `ttl` option's
   */
  ttl?: Duration;
}

/**
 * The visitor's small state, bin by bin. Reads are lazy and shared within a request. A store
 * failure never rejects: it goes to `onError`, reads resolve to `undefined`, writes to
 * `false` (`update` to `undefined`). Only a programming error rejects: a bad bin name or
 * value (`BinError`), a cookie budget overrun (`CookieError`), a store that lacks what the
 * call needs (`ConfigError`).
 */
export interface BinCache {
  /** The bin's data (a fresh copy), or `undefined` when absent, expired, or the store is down. */
  get<T = unknown>(bin: BinRef<T>): Promise<T | undefined>;
  /** Stores data JSON can carry; `true` once stored, `false` when the store failed (onError heard why). */
  set<T>(bin: BinRef<T>, data: NoInfer<T>, options?: SetOptions): Promise<boolean>;
  /** Removes the bin; `true` once done, `false` when the store failed. */
  delete(bin: BinRef): Promise<boolean>;
  /** Several bins, in one round trip per store. */
  getMany<const B extends readonly BinRef[]>(bins: B): Promise<ManyData<B>>;
  /**
   * An atomic read-modify-write of one bin: `fn` gets a copy of the current data (or
   * `undefined`) and returns the next, checked like a `set`; returning `undefined` deletes
   * the bin. Resolves to the new data, or `undefined` (deleted, or the store failed). `fn`
   * may run more than once where the store retries a compare-and-set: keep it free of side
   * effects. Rejects with a `ConfigError` on a store that cannot update atomically.
   *
   * @example
   * ```ts
   * const visits = await visitor.cache.update('mymod:visits', (n?: number) => (n ?? 0) + 1);
   * ```
   */
  update<T>(
    bin: BinRef<T>,
    fn: (current: T | undefined) => NoInfer<T> | undefined,
    options?: SetOptions,
  ): Promise<T | undefined>;
}

/**
 * A typed bin: its name, and optionally its own lifetime and store. A store named here is
 * opened by every `createVisitorState` (at construction, or when it lists its stores), so
 * that `ready()` and `cacheCookies` know it before the bin is first used.
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
  if (options.store !== undefined) declareStore(options.store);
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

/**
 * What this request knows of one bin of one visitor: the data as the store gave it or as it
 * was set (never handed out as it is), and its JSON text once a comparison needed it.
 */
class Known {
  data: unknown;
  json: string | undefined;
  parsed: boolean;

  constructor(data: unknown, json: string | undefined, parsed: boolean) {
    this.data = data;
    this.json = json;
    this.parsed = parsed;
  }

  static read(data: unknown): Known {
    return new Known(data, undefined, true);
  }

  static written(json: string): Known {
    return new Known(undefined, json, false);
  }

  /** A fresh copy of the data, for the caller to keep or change. */
  copy(): unknown {
    if (!this.parsed) {
      this.data = JSON.parse(this.json as string);
      this.parsed = true;
    }
    return copyData(this.data);
  }

  text(): string | undefined {
    if (this.json === undefined && this.data !== undefined) this.json = JSON.stringify(this.data);
    return this.json;
  }
}

const ABSENT = Known.read(undefined);
const copyOf = (known: Known) => known.copy();

/**
 * The bin cache of one visitor for one request, and the request's memo of bins: the one
 * place that remembers what the store holds. Its key rule: one entry per (visitor ID, bin
 * name), whatever store the bin lives in: the first in fields, the others in a Map under
 * `${visitorId} ${bin}` (neither contains a space).
 * Each bin is read at most once per ID per request, concurrent readers share the read, and a
 * write is skipped for a target ID only when this request knows that target already holds the
 * same JSON. A class, made once per request, so that its methods live on the prototype.
 */
class RequestBinCache implements BinCache {
  readonly #owner: CacheOwner;
  readonly #settings: CacheSettings;
  readonly #stores: StoresOf;
  // The first bin a request reads is kept in three fields, and a Map is made for a second one:
  // most requests read one bin, and a Map plus a key string per request showed in resolve + get.
  #firstId: string | undefined;
  #firstName: string | undefined;
  #first: Known | Promise<Known> | undefined;
  #memo: Map<string, Known | Promise<Known>> | undefined;

  constructor(owner: CacheOwner, settings: CacheSettings, stores: StoresOf) {
    this.#owner = owner;
    this.#settings = settings;
    this.#stores = stores;
  }

  // Not async: a bin read through a store's peek costs one promise, the one returned.
  get<T>(ref: BinRef<T>): Promise<T | undefined> {
    try {
      const known = this.#load(this.#route(ref));
      return (known instanceof Promise ? known.then(copyOf) : Promise.resolve(known.copy())) as Promise<T | undefined>;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async getMany<const B extends readonly BinRef[]>(refs: B): Promise<ManyData<B>> {
    const routed = refs.map((ref) => this.#route(ref));
    const groups = new Map<StoreHandle, Routed[]>();
    for (const r of routed) {
      if (this.#recall(this.#readerOf(r.handle), r.name)) continue;
      const group = groups.get(r.handle);
      if (!group) groups.set(r.handle, [r]);
      else if (!group.some((g) => g.name === r.name)) group.push(r);
    }
    for (const [handle, group] of groups) {
      const id = this.#readerOf(handle);
      const names = group.map((r) => r.name);
      const many = this.#stores.of(handle).then((store) => store.getMany(id, names));
      for (const [i, r] of group.entries())
        this.#remember(
          id,
          r.name,
          many.then((found) => Known.read(found[i])),
        );
    }
    const known = await Promise.all(routed.map((r) => this.#load(r)));
    return known.map(copyOf) as never;
  }

  async set<T>(ref: BinRef<T>, data: NoInfer<T>, options: SetOptions = {}): Promise<boolean> {
    const routed = this.#route(ref);
    const json = serializeBin(routed.name, data, this.#settings.maxValueBytes);
    const explicitTtl = options.ttl === undefined ? undefined : toMs(options.ttl, `ttl of bin '${routed.name}'`);
    return this.#write(
      routed,
      async (store, to, ttlMs) => {
        if (explicitTtl === undefined && (await this.#textOf(to, routed.name)) === json) return;
        await store.set(to, routed.name, data, ttlMs);
        this.#remember(to, routed.name, Known.written(json));
      },
      explicitTtl,
    );
  }

  delete(ref: BinRef): Promise<boolean> {
    try {
      const routed = this.#route(ref);
      return this.#write(routed, async (store, to) => {
        await store.delete(to, routed.name);
        this.#remember(to, routed.name, ABSENT);
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async update<T>(
    ref: BinRef<T>,
    fn: (current: T | undefined) => NoInfer<T> | undefined,
    options: SetOptions = {},
  ): Promise<T | undefined> {
    const routed = this.#route(ref);
    const { name } = routed;
    const explicitTtl = options.ttl === undefined ? undefined : toMs(options.ttl, `ttl of bin '${name}'`);
    const { maxValueBytes } = this.#settings;
    let result: Known = ABSENT;
    // The value is checked as a set checks it; a BinError thrown here writes nothing.
    const next = (current: unknown): unknown => {
      const value = fn(copyData(current) as T | undefined);
      if (value === undefined) {
        result = ABSENT;
        return undefined;
      }
      const json = serializeBin(name, value, maxValueBytes);
      result = Known.written(json);
      return JSON.parse(json);
    };
    const stored = await this.#write(
      routed,
      async (store, to, ttlMs, first) => {
        if (first) await store.update(to, name, next, ttlMs);
        else if (result === ABSENT) await store.delete(to, name);
        else await store.set(to, name, result.copy(), ttlMs);
        this.#remember(to, name, result);
      },
      explicitTtl,
      true,
    );
    return stored ? (result.copy() as T | undefined) : undefined;
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

  /** The ID a store's bins are read under: a request-scoped store holds only the client's own. */
  #readerOf(handle: StoreHandle): string {
    const { id, own } = this.#owner;
    return own !== undefined && handle.requestScoped() === true ? own : id;
  }

  #load(routed: Routed): Known | Promise<Known> {
    const id = this.#readerOf(routed.handle);
    const known = this.#recall(id, routed.name);
    if (known) return known;
    const plain = routed.handle.plain();
    // A store in this process answers at once through peek: such a get costs the one promise it returns.
    const loading = plain?.peek
      ? Known.read(plain.peek(id, routed.name))
      : (plain
          ? plain.get(id, routed.name)
          : this.#stores.of(routed.handle).then((store) => store.get(id, routed.name))
        ).then(Known.read);
    this.#remember(id, routed.name, loading);
    return loading;
  }

  async #textOf(id: string, name: string): Promise<string | undefined | null> {
    const known = this.#recall(id, name);
    // null: this request does not know what the target holds.
    return known === undefined ? null : (await known).text();
  }

  #remember(id: string, name: string, known: Known | Promise<Known>): void {
    if (this.#firstName === undefined || (name === this.#firstName && id === this.#firstId)) {
      this.#firstId = id;
      this.#firstName = name;
      this.#first = known;
      return;
    }
    this.#memo ??= new Map();
    this.#memo.set(`${id} ${name}`, known);
  }

  #recall(id: string, name: string): Known | Promise<Known> | undefined {
    if (name === this.#firstName && id === this.#firstId) return this.#first;
    return this.#memo?.get(`${id} ${name}`);
  }

  #forget(id: string, name: string): void {
    if (name === this.#firstName && id === this.#firstId) this.#first = undefined;
    this.#memo?.delete(`${id} ${name}`);
  }

  /**
   * Runs `write` for each ID the bin is written under: the visitor's, and for a shared ID the
   * client's own too (a request-scoped store holds only the client's own). `true` when every
   * write succeeded; `false` after a store failure, which onError has heard.
   */
  async #write(
    routed: Routed,
    write: (store: BinStore, to: string, ttlMs: number, first: boolean) => Promise<void>,
    explicitTtl?: number,
    /** One target after the other: an update computes under the first and copies to the rest. */
    sequential = false,
  ): Promise<boolean> {
    const { id, own, maxTtl } = this.#owner;
    const ttlMs = explicitTtl ?? routed.ttlMs;
    const ttlOf = (to: string) => (to === id && maxTtl !== undefined ? Math.min(ttlMs, maxTtl) : ttlMs);
    try {
      const store = await this.#stores.of(routed.handle);
      const targets = own === undefined ? [id] : routed.handle.requestScoped() === true ? [own] : [id, own];
      if (sequential) {
        for (const [i, to] of targets.entries()) await write(store, to, ttlOf(to), i === 0);
      } else await Promise.all(targets.map((to, i) => write(store, to, ttlOf(to), i === 0)));
      return true;
    } catch (error) {
      if (!(error instanceof StorageError)) throw error;
      // What the store holds is unknown now: the next read asks it.
      this.#forget(id, routed.name);
      if (own !== undefined) this.#forget(own, routed.name);
      return false;
    }
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
