import { ConfigError } from '../errors.js';

/**
 * A store URL fit for an error message: the password, when there is one, is masked.
 *
 * @example
 * ```ts
 * describeStore('redis://app:s3cret@cache:6379/0'); // 'redis://app:***@cache:6379/0'
 * ```
 */
export function describeStore(url: URL | string): string {
  return String(url).replace(/\/\/([^:/?#@\s]*):[^/?#\s]*@/g, '//$1:***@');
}

const isModuleNotFound = (error: unknown, name: string): boolean =>
  error instanceof Error &&
  ((error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' ||
    (error as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' ||
    isNotInBundle(error)) &&
  error.message.includes(name);

/** workerd's failure for a module that is not part of the Worker's bundle. */
const isNotInBundle = (error: Error): boolean => error.message.startsWith('No such module');

/**
 * Imports a module by a name held in a variable. Bundlers (esbuild and so wrangler, Vite,
 * webpack, Rollup) resolve every `import('literal')` they meet, used or not, and stop where
 * the package is not installed: a Cloudflare Worker could not be built without `pg`. An
 * import of a variable is left to the runtime, which resolves it where the store is used.
 */
const importByName = (specifier: string): Promise<unknown> =>
  import(/* webpackIgnore: true */ /* @vite-ignore */ specifier);

/**
 * Loads an optional peer dependency (a store driver) only when its scheme is used, by a
 * specifier that bundlers leave alone, so an application that never uses the store bundles
 * without it. A driver that is not installed becomes a {@link ConfigError} that says what to
 * install. `load` replaces the import (tests, a driver the application hands over).
 *
 * @example
 * ```ts
 * const { createClient } = await loadPeer<typeof import('@redis/client')>('@redis/client', url);
 * ```
 */
export async function loadPeer<T>(
  name: string,
  store: URL | string,
  load: () => Promise<T> = () => importByName(name) as Promise<T>,
): Promise<T> {
  try {
    return await load();
  } catch (error) {
    if (!isModuleNotFound(error, name)) throw error;
    const where = describeStore(store);
    throw new ConfigError(
      isNotInBundle(error as Error)
        ? `store '${where}' needs the package ${name}, which a Worker cannot load at run time; on Cloudflare Workers use an unstorage instance (Workers KV) or 'cookie:'`
        : `store '${where}' needs the package ${name}: npm install ${name}`,
      { cause: error },
    );
  }
}
