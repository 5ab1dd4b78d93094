import { type ErrorHook, StorageError, VisitorStateError } from '../errors.js';
import type { Storage } from './storage.js';

/**
 * A storage whose every call ends within the timeout and fails in one way, whatever the
 * store underneath does: `get` and `getMany` report and resolve to "absent", writes report
 * and reject with a {@link StorageError}. Keyv's adapters differ here (one swallows, one
 * throws, one hangs while Redis is down); this is where they are made uniform.
 */
export interface GuardedStorage {
  get(visitorId: string, bin: string): Promise<unknown>;
  getMany(visitorId: string, bins: readonly string[]): Promise<unknown[]>;
  set(visitorId: string, bin: string, data: unknown, ttlMs: number): Promise<void>;
  /** Set-if-absent; atomic where the storage has `add`, a get-then-set otherwise. */
  add(visitorId: string, bin: string, data: unknown, ttlMs: number): Promise<boolean>;
  delete(visitorId: string, bin: string): Promise<void>;
  bins(visitorId: string): Promise<string[]>;
}

export function guardStorage(
  open: Promise<Storage>,
  label: string,
  timeoutMs: number,
  onError: ErrorHook,
): GuardedStorage {
  const call = async <T>(what: string, run: (storage: Storage) => Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const storage = await open;
    try {
      return await Promise.race([
        run(storage),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new StorageError(`${label} did not answer ${what} within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };

  const failure = (what: string, error: unknown): StorageError =>
    error instanceof StorageError
      ? error
      : new StorageError(
          `${label} failed to ${what}${error instanceof VisitorStateError ? `: ${error.message}` : ''}`,
          { cause: error },
        );

  const write = async (what: string, run: (storage: Storage) => Promise<void>): Promise<void> => {
    try {
      await call(what, run);
    } catch (error) {
      const reported = failure(what, error);
      onError(reported);
      throw reported;
    }
  };

  const read = async <T>(what: string, run: (storage: Storage) => Promise<T>, absent: T): Promise<T> => {
    try {
      return await call(what, run);
    } catch (error) {
      onError(failure(what, error));
      return absent;
    }
  };

  return {
    get: (visitorId, bin) => read('get', (s) => s.get(visitorId, bin), undefined),
    getMany: (visitorId, bins) =>
      read(
        'get several bins',
        (s) => (s.getMany ? s.getMany(visitorId, bins) : Promise.all(bins.map((bin) => s.get(visitorId, bin)))),
        bins.map(() => undefined),
      ),
    set: (visitorId, bin, data, ttlMs) => write('set', (s) => s.set(visitorId, bin, data, ttlMs)),
    add: async (visitorId, bin, data, ttlMs) => {
      let stored = false;
      await write('add', async (s) => {
        if (s.add) stored = await s.add(visitorId, bin, data, ttlMs);
        else if ((await s.get(visitorId, bin)) === undefined) {
          await s.set(visitorId, bin, data, ttlMs);
          stored = true;
        }
      });
      return stored;
    },
    delete: (visitorId, bin) => write('delete', (s) => s.delete(visitorId, bin)),
    bins: async (visitorId) => {
      let names: string[] | undefined;
      await write('list bins', async (s) => {
        names = s.bins ? await s.bins(visitorId) : [];
      });
      return names ?? [];
    },
  };
}
