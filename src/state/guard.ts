import { type ErrorHook, StorageError, VisitorStateError } from '../errors.js';
import { unref } from '../unref.js';
import { type HeldBin, inProcess, jsonText, type TextStorage } from './storage.js';

/**
 * A storage whose every call ends within the timeout and fails in one way, whatever the
 * store underneath does: `get` and `getMany` report and resolve to "absent", writes report
 * and reject with a {@link StorageError}. Keyv's adapters differ here (one swallows, one
 * throws, one hangs while Redis is down); this is where they are made uniform.
 */
export interface GuardedStorage {
  get(visitorId: string, bin: string): Promise<unknown>;
  getMany(visitorId: string, bins: readonly string[]): Promise<unknown[]>;
  /** The bin as JSON text, as the store keeps it where it can: one parse less for the bin cache. */
  getText(visitorId: string, bin: string): Promise<string | undefined>;
  /**
   * The bin at once, as the store holds it, where the store can answer at once (an open store
   * in this process); else `getText`'s promise.
   */
  getNow(visitorId: string, bin: string): HeldBin | undefined | Promise<string | undefined>;
  getManyText(visitorId: string, bins: readonly string[]): Promise<(string | undefined)[]>;
  set(visitorId: string, bin: string, data: unknown, ttlMs: number): Promise<void>;
  /** Set-if-absent; atomic where the storage has `add`, a get-then-set otherwise. */
  add(visitorId: string, bin: string, data: unknown, ttlMs: number): Promise<boolean>;
  delete(visitorId: string, bin: string): Promise<void>;
  bins(visitorId: string): Promise<string[]>;
}

export function guardStorage(
  open: Promise<TextStorage>,
  label: string,
  timeoutMs: number,
  onError: ErrorHook,
): GuardedStorage {
  // One coarse ticker per store instead of a timer per call: a setTimeout per call cost a
  // quarter of Redis's throughput at 50 calls in flight. A call fails within 1.25x the timeout.
  const pending = new Set<{ readonly deadline: number; fail(): void }>();
  let ticker: NodeJS.Timeout | undefined;
  const tick = () => {
    const now = Date.now();
    for (const entry of pending) {
      if (entry.deadline <= now) {
        pending.delete(entry);
        entry.fail();
      }
    }
    if (pending.size === 0) {
      clearInterval(ticker);
      ticker = undefined;
    }
  };

  let opened: TextStorage | undefined;
  open.then(
    (storage) => {
      opened = storage;
    },
    () => {},
  );

  // Plain promise chains, not async functions: at 50 calls in flight every extra promise shows.
  const call = <T>(what: string, run: (storage: TextStorage) => Promise<T>): Promise<T> => {
    const storage = opened;
    if (!storage) return open.then(() => call(what, run));
    // A store in this process answers or throws; only one over a network can hang.
    if (storage[inProcess]) {
      try {
        return run(storage);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return new Promise<T>((resolve, reject) => {
      const entry = {
        deadline: Date.now() + timeoutMs,
        fail: () => reject(new StorageError(`${label} did not answer ${what} within ${timeoutMs} ms`)),
      };
      pending.add(entry);
      ticker ??= unref(setInterval(tick, Math.max(5, timeoutMs / 4)));
      let running: Promise<T>;
      try {
        running = run(storage);
      } catch (error) {
        pending.delete(entry);
        reject(error);
        return;
      }
      running.then(
        (value) => {
          pending.delete(entry);
          resolve(value);
        },
        (error: unknown) => {
          pending.delete(entry);
          reject(error);
        },
      );
    });
  };

  const failure = (what: string, error: unknown): StorageError =>
    error instanceof StorageError
      ? error
      : new StorageError(
          `${label} failed to ${what}${error instanceof VisitorStateError ? `: ${error.message}` : ''}`,
          { cause: error },
        );

  const write = async (what: string, run: (storage: TextStorage) => Promise<void>): Promise<void> => {
    try {
      await call(what, run);
    } catch (error) {
      const reported = failure(what, error);
      onError(reported);
      throw reported;
    }
  };

  const read = <T>(what: string, run: (storage: TextStorage) => Promise<T>, absent: T): Promise<T> =>
    call(what, run).then(undefined, (error: unknown) => {
      onError(failure(what, error));
      return absent;
    });

  const getText = (visitorId: string, bin: string) =>
    read(
      'get',
      async (s) => (s[jsonText] ? s[jsonText].get(visitorId, bin) : asText(await s.get(visitorId, bin))),
      undefined,
    );

  return {
    get: (visitorId, bin) => read('get', (s) => s.get(visitorId, bin), undefined),
    getMany: (visitorId, bins) =>
      read(
        'get several bins',
        (s) => (s.getMany ? s.getMany(visitorId, bins) : Promise.all(bins.map((bin) => s.get(visitorId, bin)))),
        bins.map(() => undefined),
      ),
    getText,
    getNow(visitorId, bin) {
      const local = opened?.[inProcess];
      if (!local) return getText(visitorId, bin);
      try {
        return local.read(visitorId, bin);
      } catch (error) {
        onError(failure('get', error));
        return undefined;
      }
    },
    getManyText: (visitorId, bins) =>
      read(
        'get several bins',
        async (s) =>
          s[jsonText]
            ? s[jsonText].getMany(visitorId, bins)
            : (s.getMany
                ? await s.getMany(visitorId, bins)
                : await Promise.all(bins.map((bin) => s.get(visitorId, bin)))
              ).map(asText),
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

/** JSON text of data a storage returned; `undefined` stays absent. */
export const asText = (data: unknown): string | undefined => (data === undefined ? undefined : JSON.stringify(data));
