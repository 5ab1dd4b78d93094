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

/**
 * The Redis client bounds a command it has queued, but not the wait for a cluster node's
 * connection, nor a Sentinel's wait for a master: this bounds them all. A call fails within
 * 1.25x its timeout.
 *
 * @example
 * ```ts
 * const { within } = deadlines(250, "store 'redis://cache:6379'");
 * await within('GET', (signal) => client.sendCommand(['GET', key], { abortSignal: signal }));
 * ```
 */
export function deadlines(timeoutMs: number, label: string): Deadlines {
  const pending = new Set<{ readonly deadline: number; fail(): void }>();
  let ticker: NodeJS.Timeout | undefined;
  const tick = () => {
    const now = Date.now();
    for (const entry of pending) {
      if (entry.deadline > now) continue;
      pending.delete(entry);
      entry.fail();
    }
    if (pending.size === 0) {
      clearInterval(ticker);
      ticker = undefined;
    }
  };
  return {
    timeoutMs,
    within<T>(what: string, run: (signal: AbortSignal) => Promise<T>, ms = timeoutMs): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const abort = new AbortController();
        const entry = {
          deadline: Date.now() + ms,
          fail: () => {
            abort.abort();
            reject(new StorageError(`store '${label}' did not answer ${what} within ${ms} ms`));
          },
        };
        pending.add(entry);
        if (ticker === undefined) {
          ticker = setInterval(tick, Math.max(5, timeoutMs / 4));
          ticker.unref?.();
        }
        let running: Promise<T>;
        try {
          running = run(abort.signal);
        } catch (error) {
          running = Promise.reject(error);
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
    },
  };
}
