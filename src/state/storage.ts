import type { KeyRing } from '../crypto.js';
import type { ResponseView } from '../http.js';

/**
 * Where bins live. Each (visitor, bin) pair is an entry of its own, so two requests that
 * write two bins of one visitor at once lose nothing. `data` is what JSON can carry; the
 * bin cache has checked it before a storage sees it.
 *
 * | method | |
 * | --- | --- |
 * | `get`, `set`, `delete` | required |
 * | `getMany` | recommended: several bins in one round trip |
 * | `add` | recommended: an atomic set-if-absent, for `link()` |
 * | `sweep` | recommended where the store has no native expiry |
 * | `bins` | recommended: lets `forget()` and `rotate()` find a visitor's bins |
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
  /**
   * Stores `data` only when the bin is absent or expired, atomically; resolves to whether it
   * stored. `visitor.link()` uses it so that two concurrent logins of one user agree on one
   * visitor. Without it, a get-then-set stands in, which two servers can race.
   */
  add?(visitorId: string, bin: string, data: unknown, ttlMs: number): Promise<boolean>;
  /** The data of several bins, in order, in one round trip. */
  getMany?(visitorId: string, bins: readonly string[]): Promise<unknown[]>;
  /** The names of the visitor's bins that have not expired. */
  bins?(visitorId: string): Promise<string[]>;
  /** Removes expired entries; resolves to how many it removed. */
  sweep?(): Promise<number>;
  close?(): Promise<void>;
}

/**
 * Built-in storages keep bins as JSON text and can hand it over as it is: the bin cache then
 * parses once, instead of the storage parsing and the cache serialising it again.
 */
export const jsonText = Symbol('visitor-state.jsonText');

/** The JSON-text reads of a built-in storage. */
export interface JsonText {
  get(visitorId: string, bin: string): Promise<string | undefined>;
  getMany(visitorId: string, bins: readonly string[]): Promise<(string | undefined)[]>;
}

/**
 * A storage that lives in this process and cannot hang (the memory storage): the guard skips
 * its deadline bookkeeping, and the bin cache reads its JSON text synchronously.
 */
export const inProcess = Symbol('visitor-state.inProcess');

/** A bin as a storage in this process holds it: its JSON text, and that text parsed. Neither is handed out as it is. */
export interface HeldBin {
  readonly json: string;
  readonly data: unknown;
}

/** The synchronous read of a storage in this process. */
export interface InProcess {
  read(visitorId: string, bin: string): HeldBin | undefined;
}

/** A built-in storage: JSON-text reads, and whether it lives in this process. */
export type TextStorage = Storage & { readonly [jsonText]?: JsonText; readonly [inProcess]?: InProcess };

const parseJson = (json: string | undefined): unknown => (json === undefined ? undefined : JSON.parse(json));

/** `get` and `getMany` of a storage that keeps JSON text, with the text reads beside them. */
export function readsFromJsonText(text: JsonText): Pick<TextStorage, 'get' | 'getMany' | typeof jsonText> {
  return {
    [jsonText]: text,
    get: async (visitorId, bin) => parseJson(await text.get(visitorId, bin)),
    getMany: async (visitorId, bins) => (await text.getMany(visitorId, bins)).map(parseJson),
  };
}

/** What a request-scoped storage gets for one request. */
export interface StorageRequest {
  readonly cookies: Readonly<Record<string, string | undefined>>;
  readonly secure: boolean;
  readonly response: ResponseView | undefined;
  readonly keys: KeyRing;
  now(): number;
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
