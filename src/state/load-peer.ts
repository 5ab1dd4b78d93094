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
    (error as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') &&
  error.message.includes(name);

/**
 * Loads an optional peer dependency (a store driver) only when its scheme is used. A
 * driver that is not installed becomes a {@link ConfigError} that says what to install.
 *
 * @example
 * ```ts
 * const { createClient } = await loadPeer('@redis/client', url, () => import('@redis/client'));
 * ```
 */
export async function loadPeer<T>(name: string, store: URL | string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    if (!isModuleNotFound(error, name)) throw error;
    throw new ConfigError(`store '${describeStore(store)}' needs the package ${name}: npm install ${name}`, {
      cause: error,
    });
  }
}
