import { type ErrorHook, StorageError, VisitorStateError } from '../errors.js';
import { type CompleteStorage, type ListedBin, withFallbacks } from './capabilities.js';
import type { Storage } from './storage.js';

/**
 * The calls the library makes on one store, each ending within the timeout and failing in
 * one way whatever the store underneath does: reads report and resolve to "absent"; writes
 * and listings report and reject with a {@link StorageError}. Keyv's adapters differ here
 * (one swallows, one throws, one hangs while Redis is down); this is where they are made
 * uniform. A `ConfigError`, `BinError` or `CookieError` from below is a programming error:
 * it rejects as it is and is not reported.
 */
export interface GuardedStorage {
  get(visitorId: string, bin: string): Promise<unknown>;
  getMany(visitorId: string, bins: readonly string[]): Promise<unknown[]>;
  set(visitorId: string, bin: string, data: unknown, ttlMs: number): Promise<void>;
  /** Set-if-absent, atomic (or refused with a `ConfigError`). */
  add(visitorId: string, bin: string, data: unknown, ttlMs: number): Promise<boolean>;
  /** Atomic read-modify-write (or refused); resolves to what was stored. */
  update(visitorId: string, bin: string, next: (current: unknown) => unknown, ttlMs: number): Promise<unknown>;
  delete(visitorId: string, bin: string): Promise<void>;
  /** Every bin of the visitor, the library's `@` records included. */
  bins(visitorId: string): Promise<string[]>;
  entries(visitorId: string): Promise<ListedBin[]>;
  /**
   * The store's synchronous read (`peek`) once it is open and has one: the data, or
   * `undefined` after a failure was reported; `undefined` as a method where there is none.
   */
  readonly peek: ((visitorId: string, bin: string) => unknown) | undefined;
  /** Resolves once the store is open and answers a read; rejects with why not (a `StorageError` for a store down or slow). */
  probe(): Promise<void>;
}

export interface GuardOptions {
  readonly label: string;
  /** A call (and the opening it waits for) fails after this long; `undefined`: no bound. */
  readonly timeoutMs: number | undefined;
  readonly onError: ErrorHook;
  /** The storage lives in one request (see {@link withFallbacks}). */
  readonly local?: boolean;
}

/**
 * Where every storage the library opens enters it, shared or bound to a request: the one
 * place to wrap a storage, e.g. with tracing (`return traced(storage, label)`).
 */
const observe = (storage: Storage, _label: string): Storage => storage;

/** A failure of the store, as onError hears it and a write rejects with it. */
const failure = (label: string, what: string, error: unknown): StorageError =>
  error instanceof StorageError
    ? error
    : new StorageError(`${label} failed to ${what}${error instanceof VisitorStateError ? `: ${error.message}` : ''}`, {
        cause: error,
      });

/**
 * A listing (for forget, rotate, adoption: never on a page's path) may take this many
 * timeouts: it reads every bin of a visitor, and a store that cannot find them by visitor
 * (a Keyv instance) walks all its keys.
 */
const LISTING = 20;

/** Programming errors pass through unreported: a store failure is anything else. */
const isProgrammingError = (error: unknown) => error instanceof VisitorStateError && !(error instanceof StorageError);

export function guardStorage(open: Promise<Storage> | Storage, options: GuardOptions): GuardedStorage {
  const { label, timeoutMs, onError } = options;
  // One coarse ticker per store instead of a timer per call: a setTimeout per call cost a
  // quarter of Redis's throughput at 50 calls in flight. A call fails within 1.25x the timeout.
  const pending = new Set<{ readonly deadline: number; fail(): void }>();
  let ticker: ReturnType<typeof setInterval> | undefined;
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

  let opened: CompleteStorage | undefined;
  // A storage with `peek` lives in this process and answers without I/O (Storage.peek): it
  // cannot hang, so its calls skip the deadline bookkeeping, which cost a sequential get on
  // the memory store about 4.5 us of its 6 (1.2 us without).
  let inProcess = false;
  let peekOf: Storage['peek'];
  const complete = (storage: Storage) => {
    inProcess = typeof storage.peek === 'function';
    peekOf = storage.peek?.bind(storage);
    opened = withFallbacks(observe(storage, label), label, { local: options.local === true });
    return opened;
  };
  // A store that cannot be opened fails each call like a store that is down: a ConfigError of
  // its factory is what ready() rejects with, not what every request must handle.
  const ready: Promise<CompleteStorage> =
    open instanceof Promise
      ? open.then(complete, (error: unknown) => {
          throw failure(label, 'open', error);
        })
      : Promise.resolve(complete(open));
  ready.catch(() => {}); // reported on use; never an unhandled rejection

  const run = <T>(go: (storage: CompleteStorage) => Promise<T>): Promise<T> => {
    try {
      return opened ? go(opened) : ready.then(go);
    } catch (error) {
      return Promise.reject(error);
    }
  };

  // Plain promise chains, not async functions: at 50 calls in flight every extra promise shows.
  const call = <T>(what: string, go: (storage: CompleteStorage) => Promise<T>, factor = 1): Promise<T> => {
    if (timeoutMs === undefined || inProcess) return run(go);
    const bound = timeoutMs * factor;
    return new Promise<T>((resolve, reject) => {
      const entry = {
        deadline: Date.now() + bound,
        fail: () => reject(new StorageError(`${label} did not answer ${what} within ${bound} ms`)),
      };
      pending.add(entry);
      if (ticker === undefined) {
        ticker = setInterval(tick, Math.max(5, timeoutMs / 4));
        // In workerd setInterval returns a number, which has no unref.
        (ticker as { unref?: () => void }).unref?.();
      }
      run(go).then(
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

  const write = <T>(
    what: string,
    go: (storage: CompleteStorage) => Promise<T>,
    factor = 1,
    ours?: (error: unknown) => boolean,
  ): Promise<T> =>
    call(what, go, factor).catch((error: unknown) => {
      if (isProgrammingError(error) || ours?.(error)) throw error;
      const reported = failure(label, what, error);
      onError(reported);
      throw reported;
    });

  const read = <T>(what: string, go: (storage: CompleteStorage) => Promise<T>, absent: T): Promise<T> =>
    call(what, go).then(undefined, (error: unknown) => {
      if (isProgrammingError(error)) throw error;
      onError(failure(label, what, error));
      return absent;
    });

  const peek = (visitorId: string, bin: string): unknown => {
    try {
      return (peekOf as NonNullable<Storage['peek']>)(visitorId, bin);
    } catch (error) {
      if (isProgrammingError(error)) throw error;
      onError(failure(label, 'get', error));
      return undefined;
    }
  };

  const guarded: GuardedStorage = {
    get: (visitorId, bin) => read('get', (s) => s.get(visitorId, bin), undefined),
    getMany: (visitorId, bins) =>
      read(
        'get several bins',
        (s) => s.getMany(visitorId, bins),
        bins.map(() => undefined),
      ),
    set: (visitorId, bin, data, ttlMs) => write('set', (s) => s.set(visitorId, bin, data, ttlMs)),
    add: (visitorId, bin, data, ttlMs) => write('add', (s) => s.add(visitorId, bin, data, ttlMs)),
    update(visitorId, bin, next, ttlMs) {
      // What `next` throws is the caller's own error, not the store's: it passes unreported.
      let thrown: { error: unknown } | undefined;
      const watched = (current: unknown) => {
        try {
          return next(current);
        } catch (error) {
          thrown = { error };
          throw error;
        }
      };
      return write(
        'update',
        (s) => s.update(visitorId, bin, watched, ttlMs),
        1,
        (error) => thrown?.error === error,
      );
    },
    delete: (visitorId, bin) => write('delete', (s) => s.delete(visitorId, bin)),
    bins: (visitorId) => write('list bins', (s) => s.bins(visitorId), LISTING),
    entries: (visitorId) => write('list bins', (s) => s.entries(visitorId), LISTING),
    get peek() {
      return peekOf ? peek : undefined;
    },
    probe: () =>
      call('a read', (s) => s.get('visitor-state-ready', '@ready')).then(
        () => undefined,
        (error: unknown) => {
          throw isProgrammingError(error) ? error : failure(label, 'answer a read', error);
        },
      ),
  };
  return guarded;
}
