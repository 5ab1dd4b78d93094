import { StorageError } from '../errors.js';
import type { Storage, StorageOptions } from './storage.js';

/** The part of a Keyv 5 or 6 instance this storage uses. */
export interface KeyvLike {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown, ttl?: number): Promise<boolean>;
  delete(key: string): Promise<boolean>;
  getMany(keys: string[]): Promise<unknown[]>;
  on(event: 'error', listener: (error: unknown) => void): unknown;
  off?(event: 'error', listener: (error: unknown) => void): unknown;
}

const parsed = (value: unknown): unknown => (typeof value === 'string' ? JSON.parse(value) : undefined);

/**
 * Storage over a Keyv 5 or 6 instance the application made (any Keyv adapter). Keys are
 * `${visitorId}:${bin}` inside the instance's own namespace; the data is stored as JSON
 * text, so what comes back is a fresh copy whatever the adapter does.
 *
 * Keyv hides store failures: its calls resolve `undefined` or `false` and an `error` event
 * tells what happened. This storage brings them back: a call during which Keyv reports an
 * error, or a `set` that resolves `false`, rejects with a {@link StorageError}, and the
 * error goes to `options.report` (once, until a call succeeds again). With several calls
 * in flight, one failure may fail its neighbours too, which is what an outage does anyway.
 *
 * Expiry is the adapter's (Keyv's own in-memory store does not remove expired entries
 * nobody reads), so there is no `sweep`, and no `bins`. `close()` stops listening but
 * leaves the instance open: it is the application's.
 *
 * @example
 * ```ts
 * import Keyv from 'keyv';
 * import KeyvRedis from '@keyv/redis';
 *
 * const keyv = new Keyv({ store: new KeyvRedis('redis://127.0.0.1:6379'), namespace: 'vs' });
 * const storage = keyvStorage(keyv, { namespace: 'vs', maxEntries: 100_000, report: console.error });
 * ```
 */
export function keyvStorage(keyv: KeyvLike, options: StorageOptions): Storage {
  // Keyv resolves in place of failing (undefined, false) and tells of the failure by an
  // `error` event: an event during a call means the call failed.
  let errors = 0;
  let down = false;
  const onError = (error: unknown) => {
    errors++;
    if (down) return;
    down = true;
    options.report(new StorageError('the Keyv store failed', { cause: error }));
  };
  keyv.on('error', onError);

  const checked = async <T>(what: string, call: () => Promise<T>, refused: (result: T) => boolean): Promise<T> => {
    const before = errors;
    const result = await call();
    if (errors !== before || refused(result)) throw new StorageError(`the Keyv store failed to ${what}`);
    down = false;
    return result;
  };
  const never = () => false;

  const keyOf = (visitorId: string, bin: string) => `${visitorId}:${bin}`;

  return {
    async get(visitorId, bin) {
      // getMany, because Keyv's get also hides an adapter that throws; its getMany rejects.
      const [value] = await checked(`read bin '${bin}'`, () => keyv.getMany([keyOf(visitorId, bin)]), never);
      return parsed(value);
    },

    async getMany(visitorId, bins) {
      if (bins.length === 0) return [];
      const keys = bins.map((bin) => keyOf(visitorId, bin));
      return (await checked('read bins', () => keyv.getMany(keys), never)).map(parsed);
    },

    async set(visitorId, bin, data, ttlMs) {
      const ttl = Math.max(1, Math.ceil(ttlMs));
      await checked(
        `save bin '${bin}'`,
        () => keyv.set(keyOf(visitorId, bin), JSON.stringify(data), ttl),
        (saved) => saved === false,
      );
    },

    async delete(visitorId, bin) {
      // A `false` without an error only means the bin was not there.
      await checked(`delete bin '${bin}'`, () => keyv.delete(keyOf(visitorId, bin)), never);
    },

    async close() {
      keyv.off?.('error', onError);
    },
  };
}
