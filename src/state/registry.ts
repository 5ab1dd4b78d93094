import { ConfigError } from '../errors.js';
import { cookieStorage } from './cookie-storage.js';
import { type KeyvLike, keyvStorage } from './keyv-storage.js';
import { memoryStorage } from './memory-storage.js';
import { postgresStorage } from './postgres-storage.js';
import { redisStorage } from './redis-storage.js';
import { sqliteStorage } from './sqlite-storage.js';
import type { RequestScopedStorage, Storage, StorageFactory, StorageOptions } from './storage.js';

/** A Keyv 5 or 6 instance, told apart from a storage by its `store` and `hooks` (Keyv 6 has no `opts`). */
export type KeyvInstance = KeyvLike & { readonly store: unknown; readonly hooks: unknown };

/** What the `store` option takes. */
export type StoreOption = string | Storage | RequestScopedStorage | KeyvInstance;

const builtIn: Record<string, StorageFactory> = {
  memory: (_url, options) => memoryStorage(options),
  sqlite: sqliteStorage,
  redis: redisStorage,
  rediss: redisStorage,
  'redis-sentinel': redisStorage,
  postgres: postgresStorage,
  postgresql: postgresStorage,
  cookie: () => cookieStorage(),
};

const registered = new Map<string, StorageFactory>();

/**
 * Makes `store: 'scheme://…'` use a storage of the application's own. The factory gets the
 * parsed URL and the namespace, and returns a {@link Storage} (or a promise of one).
 *
 * @example
 * ```ts
 * registerStorage('file', (url) => fileStorage(url.pathname));
 * createVisitorState({ store: 'file:///var/lib/visitor-state' });
 * ```
 */
export function registerStorage(scheme: string, factory: StorageFactory): void {
  const name = scheme.replace(/:$/, '').toLowerCase();
  if (!/^[a-z][a-z0-9+.-]*$/.test(name))
    throw new ConfigError(`'${scheme}' is not a URL scheme; use letters such as 'file'`);
  if (name in builtIn)
    throw new ConfigError(`'${name}:' is a built-in storage; register your storage under another scheme`);
  registered.set(name, factory);
}

const isKeyv = (store: object): store is KeyvInstance =>
  'store' in store && 'hooks' in store && typeof (store as { on?: unknown }).on === 'function';

/**
 * The factory a store URL names, found without opening anything, so that a malformed URL or
 * an unknown scheme is a {@link ConfigError} at construction rather than at first use.
 * Several cluster seeds (redis://h1:7000,h2:7001/) are not one URL's host: the Redis factory
 * parses them, and they get `undefined` here.
 *
 * @example
 * ```ts
 * storeFactory('bogus://x'); // throws ConfigError: unknown store scheme 'bogus:'; …
 * ```
 */
export function storeFactory(store: string): { factory: StorageFactory; url: URL } | undefined {
  if (/^(rediss?|redis-sentinel):\/\/[^/?#]*,/i.test(store)) return undefined;
  let url: URL;
  try {
    url = new URL(store);
  } catch (error) {
    throw new ConfigError(
      // The text is not echoed: a malformed URL may still hold a password.
      "the store option is not a URL; use e.g. 'memory:', 'sqlite://./data/visitor-state.sqlite' or 'redis://host:6379'",
      { cause: error },
    );
  }
  const scheme = url.protocol.slice(0, -1);
  const factory = builtIn[scheme] ?? registered.get(scheme);
  if (!factory) {
    const known = [...Object.keys(builtIn), ...registered.keys()].map((s) => `'${s}:'`).join(', ');
    throw new ConfigError(
      `unknown store scheme '${scheme}:'; use one of ${known}, or registerStorage('${scheme}', factory) first`,
    );
  }
  return { factory, url };
}

/** Opens what the `store` option names; the URL's password never appears in an error. */
export async function openStorage(
  store: StoreOption,
  options: StorageOptions,
): Promise<Storage | RequestScopedStorage> {
  if (typeof store !== 'string') return isKeyv(store) ? keyvStorage(store, options) : store;
  const named = storeFactory(store);
  if (!named) return redisStorage(store, options);
  return named.factory(named.url, options);
}
