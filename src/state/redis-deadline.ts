import { setMaxListeners } from 'node:events';
import { StorageError } from '../errors.js';

/** Bounds calls by one timeout, with one coarse ticker instead of a timer per call. */
export interface Deadlines {
  /**
   * What `run` resolves to, or a {@link StorageError} once `ms` (default: the timeout) have
   * passed. At that moment `signal` aborts: a command the client has not written yet leaves
   * its queue and is never sent, so a call that timed out lands only if it had already
   * reached the server.
   */
  within<T>(what: string, run: (signal: AbortSignal) => Promise<T>, ms?: number): Promise<T>;
  readonly timeoutMs: number;
}

/** The calls that fall due at one tick, and the signal they share. */
interface Batch {
  readonly abort: AbortController;
  readonly calls: Set<() => void>;
}

/**
 * The Redis client bounds a command it has queued, but not the wait for a cluster node's
 * connection, nor a Sentinel's wait for a master: this bounds them all. A call fails within
 * 1.25x its timeout.
 *
 * @example
 * ```ts
 * const { within } = deadlines(250, 'redis://cache:6379');
 * await within('GET', (signal) => client.sendCommand(['GET', key], { abortSignal: signal }));
 * ```
 */
export function deadlines(timeoutMs: number, label: string): Deadlines {
  // Node 20 spends some 10 µs making an AbortSignal and giving it its first listener, more
  // than a GET costs the client in all: the calls that fall due at one tick share a signal.
  // A call joins the batch of the first tick at or after its deadline and fails at most one
  // step after that tick, so within 1.25x its timeout.
  const step = Math.max(2.5, timeoutMs / 8);
  // By tick number, `Math.ceil(deadline / step)`: a batch falls due at `tick * step`.
  const due = new Map<number, Batch>();
  let ticker: NodeJS.Timeout | undefined;
  const tick = () => {
    const now = Date.now();
    for (const [at, batch] of due) {
      if (at * step > now) continue;
      due.delete(at);
      if (batch.calls.size === 0) continue;
      // The client's listeners reject its queued commands at once, but their rejections reach
      // `within` a microtask later: the StorageError below settles each call first.
      batch.abort.abort();
      for (const fail of batch.calls) fail();
    }
    if (due.size === 0) {
      clearInterval(ticker);
      ticker = undefined;
    }
  };
  const batchAt = (at: number): Batch => {
    let batch = due.get(at);
    if (batch === undefined) {
      const abort = new AbortController();
      // Every command queued in the batch listens to the signal until it is written.
      setMaxListeners(0, abort.signal);
      batch = { abort, calls: new Set() };
      due.set(at, batch);
    }
    if (ticker === undefined) {
      ticker = setInterval(tick, step);
      ticker.unref?.();
    }
    return batch;
  };
  return {
    timeoutMs,
    within<T>(what: string, run: (signal: AbortSignal) => Promise<T>, ms = timeoutMs): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const { abort, calls } = batchAt(Math.ceil((Date.now() + ms) / step));
        const fail = () => reject(new StorageError(`store '${label}' did not answer ${what} within ${ms} ms`));
        calls.add(fail);
        let running: Promise<T>;
        try {
          running = run(abort.signal);
        } catch (error) {
          running = Promise.reject(error);
        }
        running.then(
          (value) => {
            calls.delete(fail);
            resolve(value);
          },
          (error: unknown) => {
            calls.delete(fail);
            reject(error);
          },
        );
      });
    },
  };
}
