import { type Duration, toMs } from '../duration.js';
import { ConfigError, type ErrorHook, StorageError } from '../errors.js';
import { asText, type GuardedStorage, guardStorage } from './guard.js';
import { withTelemetry } from './instrumented-storage.js';
import { describeStore } from './load-peer.js';
import { openStorage, type StoreOption, storeFactory } from './registry.js';
import {
  isRequestScoped,
  type RequestScopedStorage,
  type Storage,
  type StorageOptions,
  type StorageRequest,
} from './storage.js';

/** Per-bin settings, by exact name or a pattern with `*` (`'ui:*'`). */
export interface BinRule {
  /** Where these bins live. @default the `store` option */
  store?: StoreOption;
  /** Their lifetime. @default the `ttl` option */
  ttl?: Duration;
}

/** The calls the bin cache makes on one store within one request. */
export type BinStore = Omit<GuardedStorage, 'getNow'>;

/** One opened store: shared by every request, or bound to each. */
export interface StoreHandle {
  readonly label: string;
  readonly opened: Promise<Storage | RequestScopedStorage>;
  /** The guarded shared storage; `undefined` for a request-scoped one. */
  shared(): GuardedStorage | undefined;
  readonly migrateFrom: StoreHandle | undefined;
  /**
   * Once the store is open, the guarded storage when every request uses it as it is (shared,
   * nothing to migrate from): the bin cache then reaches it without a promise.
   */
  readonly plain: GuardedStorage | undefined;
}

/** The stores as one request sees them. */
export interface StoresOf {
  /** The handle's store for this request, bound once per request. */
  of(handle: StoreHandle): Promise<BinStore>;
}

export interface RoutedBin {
  readonly handle: StoreHandle;
  readonly ttlMs: number | undefined;
}

export interface RouterOptions {
  readonly store: StoreOption;
  readonly bins: Readonly<Record<string, BinRule>>;
  readonly migrateFrom: StoreOption | undefined;
  readonly storageOptions: StorageOptions;
  readonly timeoutMs: number;
  readonly defaultTtlMs: number;
  readonly onError: ErrorHook;
}

/** Picks the store of each bin and opens each store once, at construction. */
export interface Router {
  readonly main: StoreHandle;
  route(bin: string, store: StoreOption | undefined): RoutedBin;
  /** Every store, for sweep and close. */
  handles(): StoreHandle[];
  /** Base names of the cookie stores' cookies. */
  cookieStores(): string[];
  /** The stores as one request sees them: each bound once, request-scoped ones to this request. */
  forRequest(request: StorageRequest | undefined): StoresOf;
}

const describe = (store: StoreOption) => (typeof store === 'string' ? describeStore(store) : 'custom storage');

export function createRouter(options: RouterOptions): Router {
  const byKey = new Map<StoreOption, StoreHandle>();

  const open = (store: StoreOption, migrateFrom?: StoreOption): StoreHandle => {
    const existing = byKey.get(store);
    if (existing) return existing;
    const label = `store ${describe(store)}`;
    if (typeof store === 'string') storeFactory(store); // a bad URL or scheme throws here, at construction
    const opened = Promise.resolve().then(() =>
      withTelemetry(openStorage(store, options.storageOptions), store, options.storageOptions.namespace),
    );
    opened.catch(() => {}); // reported on use and by ready(); never an unhandled rejection
    let guarded: GuardedStorage | undefined;
    const handle: StoreHandle & { plain: GuardedStorage | undefined } = {
      label,
      opened,
      shared() {
        if (typeof store === 'string' && store.startsWith('cookie:')) return undefined;
        guarded ??= guardStorage(
          opened.then((s) => (isRequestScoped(s) ? Promise.reject(new ConfigError(`${label} is request-scoped`)) : s)),
          label,
          options.timeoutMs,
          options.onError,
        );
        return guarded;
      },
      migrateFrom: migrateFrom === undefined ? undefined : open(migrateFrom),
      plain: undefined,
    };
    opened.then(
      (storage) => {
        if (!isRequestScoped(storage) && !handle.migrateFrom) handle.plain = handle.shared();
      },
      () => {},
    );
    byKey.set(store, handle);
    return handle;
  };

  const main = open(options.store, options.migrateFrom);
  const mainRoute: RoutedBin = { handle: main, ttlMs: undefined };
  const rules = Object.entries(options.bins).map(([pattern, rule]) => ({
    match: new RegExp(`^${pattern.split('*').map(escapeRegExp).join('.*')}$`),
    handle: rule.store === undefined ? main : open(rule.store),
    ttlMs: rule.ttl === undefined ? undefined : toMs(rule.ttl, `bins['${pattern}'].ttl`),
  }));

  const bind = async (handle: StoreHandle, request: StorageRequest | undefined, stores: StoresOf) => {
    const storage = await handle.opened.catch(() => undefined);
    if (storage && isRequestScoped(storage)) {
      if (!request) throw new ConfigError(`${handle.label} keeps state in cookies and needs a request`);
      return direct(storage.bind(request));
    }
    const shared = handle.shared() as GuardedStorage;
    return handle.migrateFrom ? migrating(shared, await stores.of(handle.migrateFrom), options.defaultTtlMs) : shared;
  };

  // A request-scoped store holds the request's state in its binding: one binding per request
  // and store. The map of bindings is made on first use: a plain store needs none.
  class RequestStores implements StoresOf {
    readonly #request: StorageRequest | undefined;
    #bound: Map<StoreHandle, Promise<BinStore>> | undefined;

    constructor(request: StorageRequest | undefined) {
      this.#request = request;
    }

    of(handle: StoreHandle): Promise<BinStore> {
      this.#bound ??= new Map();
      let store = this.#bound.get(handle);
      if (!store) {
        store = bind(handle, this.#request, this);
        this.#bound.set(handle, store);
      }
      return store;
    }
  }

  return {
    main,
    forRequest: (request) => new RequestStores(request),
    route(bin, store) {
      if (store !== undefined) return { handle: open(store), ttlMs: undefined };
      for (const rule of rules) if (rule.match.test(bin)) return rule;
      return mainRoute;
    },
    handles: () => [...byKey.values()],
    cookieStores: () =>
      [...byKey.keys()].flatMap((store) => {
        if (typeof store === 'string') return store.startsWith('cookie:') ? [DEFAULT_COOKIE_STORE] : [];
        return isRequestScoped(store as Storage | RequestScopedStorage)
          ? [(store as RequestScopedStorage).cookieName ?? DEFAULT_COOKIE_STORE]
          : [];
      }),
  };
}

const DEFAULT_COOKIE_STORE = 'vs_data';
const escapeRegExp = (text: string) => text.replace(/[.+?^${}()|[\]\\]/g, '\\$&');

/** A request-bound storage used as it is: its errors are already typed. */
function direct(storage: Storage): BinStore {
  const getMany = (id: string, bins: readonly string[]) =>
    storage.getMany ? storage.getMany(id, bins) : Promise.all(bins.map((b) => storage.get(id, b)));
  return {
    get: (id, bin) => storage.get(id, bin),
    getMany,
    getText: async (id, bin) => asText(await storage.get(id, bin)),
    getManyText: async (id, bins) => (await getMany(id, bins)).map(asText),
    set: (id, bin, data, ttlMs) => storage.set(id, bin, data, ttlMs),
    delete: (id, bin) => storage.delete(id, bin),
    add: async (id, bin, data, ttlMs) => {
      if (storage.add) return storage.add(id, bin, data, ttlMs);
      if ((await storage.get(id, bin)) !== undefined) return false;
      await storage.set(id, bin, data, ttlMs);
      return true;
    },
    bins: async (id) => (storage.bins ? storage.bins(id) : []),
  };
}

/** Reads fall back to the old store; what is found there moves to the new one. */
function migrating(current: BinStore, old: BinStore, ttlMs: number): BinStore {
  // The old store's remaining lifetime is not known: a moved bin starts a default one.
  const move = async (id: string, bin: string, data: unknown) => {
    await current.set(id, bin, data, ttlMs);
    await old.delete(id, bin);
  };
  const get = async (id: string, bin: string) => {
    const data = await current.get(id, bin);
    if (data !== undefined) return data;
    const found = await old.get(id, bin);
    if (found !== undefined) await move(id, bin, found).catch(reported);
    return found;
  };
  const getMany = async (id: string, bins: readonly string[]) => {
    const found = await current.getMany(id, bins);
    const missing = bins.filter((_, i) => found[i] === undefined);
    if (missing.length === 0) return found;
    const older = await old.getMany(id, missing);
    let next = 0;
    return Promise.all(
      found.map(async (data, i) => {
        if (data !== undefined) return data;
        const moved = older[next++];
        if (moved !== undefined) await move(id, bins[i] as string, moved).catch(reported);
        return moved;
      }),
    );
  };
  return {
    ...current,
    get,
    getMany,
    getText: async (id, bin) => asText(await get(id, bin)),
    getManyText: async (id, bins) => (await getMany(id, bins)).map(asText),
  };
}

/** The guard has already sent a failed move to onError; the read still succeeds. */
const reported = (error: unknown) => {
  if (!(error instanceof StorageError)) throw error;
};
