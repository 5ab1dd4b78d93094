import { type Duration, toMs } from '../duration.js';
import { ConfigError, type ErrorHook, StorageError } from '../errors.js';
import type { ListedBin } from './capabilities.js';
import { type CookieBinding, isCookieStorage } from './cookie-storage.js';
import { type GuardedStorage, guardStorage } from './guard.js';
import { withTelemetry } from './instrumented-storage.js';
import { describeStore } from './load-peer.js';
import { isKeyv, openStorage, type StoreOption, storeFactory } from './registry.js';
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

/**
 * The calls the library makes on one store within one request: reads resolve to "absent"
 * after reporting a failure; writes and listings reject with a `StorageError` after reporting.
 */
export type BinStore = Omit<GuardedStorage, 'peek' | 'probe'>;

type Opened = Storage | RequestScopedStorage;

/** One opened store: shared by every request, or bound to each. */
export interface StoreHandle {
  readonly label: string;
  readonly opened: Promise<Opened>;
  /** Whether it lives in each request (cookies); `undefined` while its factory has not answered. */
  requestScoped(): boolean | undefined;
  /** What its factory made, once it has answered. */
  current(): Opened | undefined;
  /** The guarded shared storage; `undefined` for a request-scoped one. */
  shared(): GuardedStorage | undefined;
  readonly migrateFrom: StoreHandle | undefined;
  /**
   * The guarded storage when every request uses it as it is (shared, nothing to migrate
   * from): the bin cache then reads it without waiting for this request's binding.
   */
  plain(): GuardedStorage | undefined;
}

/** The stores as one request sees them. */
export interface StoresOf {
  /** The handle's store for this request, bound once per request. */
  of(handle: StoreHandle): Promise<BinStore>;
  /**
   * Clears every chunk cookie of every cookie store that this request carries or its response
   * sets, whoever's bins they hold and whether they open or not: `forget()` leaves none.
   */
  clearCookies(): Promise<void>;
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
  /** Every store, typed bins' included, for ready, sweep and close. */
  handles(): StoreHandle[];
  /** Base names of the cookie stores' cookies. */
  cookieStores(): string[];
  /** The stores as one request sees them: each bound once, request-scoped ones to this request. */
  forRequest(request: StorageRequest | undefined): StoresOf;
}

/**
 * The stores that typed bins name (`bin('ui:theme', { store: 'cookie:' })`). Typed bins are
 * made at module level, before or after `createVisitorState`: each router opens the stores
 * declared so far at construction and the later ones when it lists its stores.
 */
const declaredStores = new Set<StoreOption>();

/** Records the store a typed bin names. */
export const declareStore = (store: StoreOption): void => {
  declaredStores.add(store);
};

const describe = (store: StoreOption) =>
  typeof store === 'string' ? describeStore(store) : isKeyv(store) ? 'Keyv instance' : 'custom storage';

const DEFAULT_COOKIE_STORE = 'vs_data';
const escapeRegExp = (text: string) => text.replace(/[.+?^${}()|[\]\\]/g, '\\$&');

export function createRouter(options: RouterOptions): Router {
  const byKey = new Map<StoreOption, StoreHandle>();

  const open = (store: StoreOption, migrateFrom?: StoreOption): StoreHandle => {
    const existing = byKey.get(store);
    if (existing) return existing;
    const label = `store ${describe(store)}`;
    if (typeof store === 'string') storeFactory(store); // a bad URL or scheme throws here, at construction
    let settled: Opened | undefined;
    let opened: Promise<Opened>;
    try {
      const made = withTelemetry(openStorage(store, options.storageOptions), store, options.storageOptions.namespace);
      if (made instanceof Promise) opened = made;
      else {
        settled = made;
        opened = Promise.resolve(made);
      }
    } catch (error) {
      opened = Promise.reject(error);
    }
    opened.then(
      (storage) => {
        settled = storage;
      },
      () => {}, // reported on use and by ready(); never an unhandled rejection
    );
    let guarded: GuardedStorage | undefined;
    const handle: StoreHandle = {
      label,
      opened,
      requestScoped: () => (settled === undefined ? undefined : isRequestScoped(settled)),
      current: () => settled,
      shared() {
        if (settled !== undefined && isRequestScoped(settled)) return undefined;
        guarded ??= guardStorage(
          opened.then((s) =>
            isRequestScoped(s)
              ? Promise.reject(new ConfigError(`${label} keeps state in each request's cookies: it cannot be shared`))
              : s,
          ),
          { label, timeoutMs: options.timeoutMs, onError: options.onError },
        );
        return guarded;
      },
      migrateFrom: migrateFrom === undefined ? undefined : open(migrateFrom),
      plain: () => plain,
    };
    // Known once the factory answered: read on every request, so worked out once.
    let plain: GuardedStorage | undefined;
    const settle = () => {
      if (settled !== undefined && !handle.migrateFrom) plain = handle.shared();
    };
    settle();
    opened.then(settle, () => {});
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
  const openDeclared = () => {
    for (const store of declaredStores) open(store);
  };
  openDeclared();

  // A request-scoped store holds the request's state in its binding: one binding per request
  // and store. The map of bindings is made on first use: a plain store needs none.
  class RequestStores implements StoresOf {
    readonly #request: StorageRequest | undefined;
    #bound: Map<StoreHandle, Promise<BinStore>> | undefined;
    /** The cookie stores' bindings as they are, beside their guarded form: for clearCookies. */
    #cookies: Map<StoreHandle, CookieBinding> | undefined;

    constructor(request: StorageRequest | undefined) {
      this.#request = request;
    }

    of(handle: StoreHandle): Promise<BinStore> {
      this.#bound ??= new Map();
      let store = this.#bound.get(handle);
      if (!store) {
        store = this.#bind(handle);
        this.#bound.set(handle, store);
      }
      return store;
    }

    async clearCookies(): Promise<void> {
      for (const handle of handles()) {
        if (!isCookieStorage(await handle.opened.catch(() => undefined))) continue;
        await this.of(handle);
        this.#cookies?.get(handle)?.clear();
      }
    }

    async #bind(handle: StoreHandle): Promise<BinStore> {
      const storage = await handle.opened.catch(() => undefined);
      if (storage && isRequestScoped(storage)) {
        const request = this.#request;
        if (!request) throw new ConfigError(`${handle.label} keeps state in cookies and needs a request`);
        let bound: Storage;
        if (isCookieStorage(storage)) {
          // It reports through onError chunks that went out where browsers drop them.
          const cookies = storage.bind(request, options.onError);
          this.#cookies ??= new Map();
          this.#cookies.set(handle, cookies);
          bound = cookies;
        } else bound = storage.bind(request);
        return guardStorage(bound, {
          label: handle.label,
          timeoutMs: undefined,
          onError: options.onError,
          local: true,
        });
      }
      const shared = handle.shared() as GuardedStorage;
      return handle.migrateFrom ? migrating(shared, await this.of(handle.migrateFrom), options.defaultTtlMs) : shared;
    }
  }

  const handles = () => {
    openDeclared();
    return [...byKey.values()];
  };

  return {
    main,
    forRequest: (request) => new RequestStores(request),
    route(bin, store) {
      if (store !== undefined) return { handle: open(store), ttlMs: undefined };
      for (const rule of rules) if (rule.match.test(bin)) return rule;
      return mainRoute;
    },
    handles,
    cookieStores: () => {
      handles();
      return [...byKey.values()].flatMap((handle) => {
        const made = handle.current();
        return made && isRequestScoped(made) ? [made.cookieName ?? DEFAULT_COOKIE_STORE] : [];
      });
    },
  };
}

/**
 * A store that takes over from an old one: a bin missing here is looked up there and moved
 * (keeping its remaining lifetime where the old store lists expiries); a delete or update
 * reaches the old store too, so that nothing deleted comes back from it.
 */
function migrating(current: BinStore, old: BinStore, defaultTtlMs: number): BinStore {
  const lifetimeIn = async (id: string, bin: string): Promise<number | undefined> => {
    const listed: ListedBin[] = await old.entries(id).catch(() => []);
    const expiresAt = listed.find((entry) => entry.bin === bin)?.expiresAt;
    return expiresAt === undefined ? undefined : expiresAt - Date.now();
  };
  // A moved bin keeps what is left of its lifetime, or starts the default one (the `ttl` option) where unknown.
  const move = async (id: string, bin: string, data: unknown) => {
    const left = (await lifetimeIn(id, bin)) ?? defaultTtlMs;
    if (left > 0) await current.set(id, bin, data, left);
    await old.delete(id, bin);
  };
  const moveQuietly = (id: string, bin: string, data: unknown) => move(id, bin, data).catch(reported);

  const get = async (id: string, bin: string) => {
    const data = await current.get(id, bin);
    if (data !== undefined) return data;
    const found = await old.get(id, bin);
    if (found !== undefined) await moveQuietly(id, bin, found);
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
        if (moved !== undefined) await moveQuietly(id, bins[i] as string, moved);
        return moved;
      }),
    );
  };
  const union = async (id: string) => {
    const [here, there] = await Promise.all([current.entries(id), old.entries(id)]);
    const seen = new Set(here.map((entry) => entry.bin));
    return [...here, ...there.filter((entry) => !seen.has(entry.bin))];
  };
  return {
    get,
    getMany,
    set: (id, bin, data, ttlMs) => current.set(id, bin, data, ttlMs),
    async add(id, bin, data, ttlMs) {
      if ((await get(id, bin)) !== undefined) return false;
      return current.add(id, bin, data, ttlMs);
    },
    async update(id, bin, next, ttlMs) {
      await get(id, bin); // moves it here first
      const stored = await current.update(id, bin, next, ttlMs);
      await old.delete(id, bin);
      return stored;
    },
    async delete(id, bin) {
      await Promise.all([current.delete(id, bin), old.delete(id, bin)]);
    },
    bins: async (id) => (await union(id)).map((entry) => entry.bin),
    entries: union,
  };
}

/** The guard has already sent a failed move to onError; the read still succeeds. */
const reported = (error: unknown) => {
  if (!(error instanceof StorageError)) throw error;
};
