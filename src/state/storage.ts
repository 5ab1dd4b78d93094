import type { KeyRing } from '../crypto.js';
import type { ResponseView } from '../http.js';

/**
 * Where bins live. Each (visitor, bin) pair is an entry of its own, so two requests that
 * write two bins of one visitor at once lose nothing. `data` is what JSON can carry; the
 * bin cache has checked it before a storage sees it. Bin names that start with `@` are the
 * library's own records (links, the bin index) and are stored like any other bin.
 *
 * Three methods are required; every other ability is a named optional method below. Where
 * one is missing, the library either uses the fallback written beside this contract
 * (`capabilities.ts`) or refuses, with a `ConfigError` naming the store and the method, the
 * operation that needs it: never a silent no-op. `visitor-state/testing` checks a storage
 * against this contract (`storageContract(name, makeStorage, { capabilities })`).
 *
 * | method | |
 * | --- | --- |
 * | `get`, `set`, `delete` | required |
 * | `getMany` | recommended: several bins in one round trip (fallback: one `get` per bin) |
 * | `add` | recommended: atomic set-if-absent, for `link()` (fallback: through `update`; else refused) |
 * | `update` | recommended: atomic read-modify-write, for `cache.update()` (no fallback: refused) |
 * | `bins` | recommended: the names of a visitor's bins, for `forget()` and `rotate()` (fallback: `entries`, else an index of names kept through `update`; else refused) |
 * | `entries` | optional: a visitor's bins with their expiry, so `rotate()` and migration keep lifetimes (fallback: `bins` + `getMany`, expiry unknown) |
 * | `visitors` | optional: every visitor, page by page, for the command line |
 * | `sweep` | recommended where the store has no native expiry |
 * | `peek` | optional: a synchronous `get`, for a storage in this process |
 * | `close` | optional |
 *
 * @example
 * ```ts
 * const map = new Map<string, { data: unknown; expires: number }>();
 * const storage: Storage = {
 *   async get(visitorId, bin) {
 *     const entry = map.get(`${visitorId}/${bin}`);
 *     return entry && entry.expires > Date.now() ? structuredClone(entry.data) : undefined;
 *   },
 *   async set(visitorId, bin, data, ttlMs) {
 *     map.set(`${visitorId}/${bin}`, { data: structuredClone(data), expires: Date.now() + ttlMs });
 *   },
 *   async delete(visitorId, bin) {
 *     map.delete(`${visitorId}/${bin}`);
 *   },
 * };
 * ```
 */
export interface Storage {
  /** The stored data, a fresh copy; `undefined` when absent or expired. */
  get(visitorId: string, bin: string): Promise<unknown>;
  /** Stores `data` for `ttlMs` milliseconds. */
  set(visitorId: string, bin: string, data: unknown, ttlMs: number): Promise<void>;
  delete(visitorId: string, bin: string): Promise<void>;
  /** The data of several bins, in order, in one round trip. */
  getMany?(visitorId: string, bins: readonly string[]): Promise<unknown[]>;
  /**
   * Stores `data` only when the bin is absent or expired, atomically; resolves to whether it
   * stored. `visitor.link()` uses it so that two concurrent logins of one user agree on one
   * visitor.
   */
  add?(visitorId: string, bin: string, data: unknown, ttlMs: number): Promise<boolean>;
  /**
   * An atomic read-modify-write of one bin: `next` gets a fresh copy of the current data
   * (`undefined` when absent or expired) and returns the data to store for `ttlMs`, or
   * `undefined` to delete the bin. A storage may call `next` more than once (a compare-and-set
   * that retried); when `next` throws, nothing is written and the call rejects with that error.
   * Resolves to what was stored (`undefined` after a delete).
   */
  update?(visitorId: string, bin: string, next: (current: unknown) => unknown, ttlMs: number): Promise<unknown>;
  /** The names of the visitor's bins that have not expired, the library's `@` records included. */
  bins?(visitorId: string): Promise<string[]>;
  /** The visitor's bins that have not expired, with their data and expiry (ms since the epoch). */
  entries?(visitorId: string): Promise<StoredBin[]>;
  /**
   * The IDs of visitors with at least one bin, one page at a time: pass the `next` of a page
   * to get the one after it; a page without `next` is the last.
   */
  visitors?(page?: { next?: string; limit?: number }): Promise<VisitorPage>;
  /** Removes expired entries; resolves to how many it removed. */
  sweep?(): Promise<number>;
  /**
   * A synchronous `get`, for a storage in this process that answers without I/O: the data (a
   * fresh copy) or `undefined`. Having it says the storage lives in this process and cannot
   * hang: the library then skips the timeout bookkeeping of its calls.
   */
  peek?(visitorId: string, bin: string): unknown;
  close?(): Promise<void>;
}

/** One bin as {@link Storage.entries} lists it. */
export interface StoredBin {
  readonly bin: string;
  readonly data: unknown;
  /** When it expires, in ms since the epoch. */
  readonly expiresAt: number;
}

/** One page of {@link Storage.visitors}. */
export interface VisitorPage {
  readonly ids: string[];
  /** Where the next page starts; absent on the last page. */
  readonly next?: string;
}

/** The optional methods of {@link Storage}, by name: what a storage can do beyond the three required ones. */
export type Capability = Exclude<keyof Storage, 'get' | 'set' | 'delete'>;

/** Every optional method of {@link Storage}, in the order its table lists them. */
export const CAPABILITIES: readonly Capability[] = [
  'getMany',
  'add',
  'update',
  'bins',
  'entries',
  'visitors',
  'sweep',
  'peek',
  'close',
];

/** Every method of {@link Storage}: the three required ones, then the capabilities. */
export const STORAGE_METHODS: readonly (keyof Storage)[] = ['get', 'set', 'delete', ...CAPABILITIES];

/** What a request-scoped storage gets for one request. */
export interface StorageRequest {
  readonly cookies: Readonly<Record<string, string | undefined>>;
  readonly secure: boolean;
  readonly response: ResponseView | undefined;
  readonly keys: KeyRing;
  now(): number;
  /** A request header, where the request has them: the cookie storage reads Host to tell whether browsers keep Secure cookies. */
  header?(name: string): string | undefined;
}

/**
 * A storage that lives in the request itself (the sealed cookie storage): bound once per
 * request to that request's cookies and response.
 */
export interface RequestScopedStorage {
  readonly scope: 'request';
  /** Base name of its cookies (`name.0`, `name.1`, …), for caches that must let them through. */
  readonly cookieName?: string;
  bind(request: StorageRequest): Storage;
}

/** What a storage factory is told besides its URL. */
export interface StorageOptions {
  /** Prefix that keeps several applications apart in one store. @default 'vs' */
  readonly namespace: string;
  /** Bound for in-memory storage. @default 100_000 */
  readonly maxEntries: number;
  /**
   * Bound of the `memory:` store, in bytes of what it holds.
   * @default 64 MiB
   */
  readonly maxBytes?: number;
  /** How long one store call (and opening the store) may take, in ms. @default 250 */
  readonly timeoutMs?: number;
  /** The clock that decides expiry. @default Date.now */
  readonly now?: () => number;
  /** Reports a failure that no operation will see, such as a lost connection. */
  report(error: unknown): void;
}

/** Makes a storage from a URL such as `file:///var/state`. */
export type StorageFactory = (
  url: URL,
  options: StorageOptions,
) => Storage | RequestScopedStorage | Promise<Storage | RequestScopedStorage>;

export const isRequestScoped = (storage: Storage | RequestScopedStorage): storage is RequestScopedStorage =>
  (storage as RequestScopedStorage).scope === 'request';
