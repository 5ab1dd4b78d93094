import { toMs } from '../duration.js';
import { ConfigError, StorageError, VisitorStateError } from '../errors.js';
import { describeStore } from '../state/load-peer.js';
import { openStorage } from '../state/registry.js';
import { type Capability, isRequestScoped, STORAGE_METHODS, type Storage } from '../state/storage.js';
import { UsageError } from './usage.js';

/** A store opened for one command: every call bounded by the timeout. */
export interface CliStore {
  /** The URL with its password masked, for messages. */
  readonly label: string;
  readonly namespace: string;
  readonly storage: Storage;
  /** The storage method, or a one-line refusal naming the store, the method and the command. */
  need<C extends Capability>(capability: C, command: string): NonNullable<Storage[C]>;
  close(): Promise<void>;
}

/**
 * How long one store call of the command line may take. Longer than the library's per-request
 * bound (a page of a listing is bigger than one bin), and still finite: a store that hangs
 * ends the command with a message instead of holding it forever.
 */
export function callTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const given = env.VISITOR_STATE_TIMEOUT;
  if (given === undefined || given === '') return 10_000;
  try {
    return toMs(/^\d+$/.test(given) ? Number(given) : (given as `${number}s`), 'VISITOR_STATE_TIMEOUT');
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** Rejects with a StorageError when `promise` has not settled within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StorageError(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Every call the command line bounds by its timeout (`close` ends it, so it is left alone). */
const METHODS = STORAGE_METHODS.filter((method) => method !== 'close');

/** Opens the store a URL names through the library's registry, as the application does. */
export async function openCliStore(url: string, namespace: string, timeoutMs: number): Promise<CliStore> {
  if (!/^[a-z][a-z0-9+.-]*:/i.test(url)) {
    throw new UsageError(
      `'${describeStore(url)}' is not a store URL; use e.g. sqlite://./data/vs.sqlite or redis://host:6379`,
    );
  }
  const label = `store ${describeStore(url)}`;
  let lastReport: unknown;
  const opening = Promise.resolve().then(() =>
    openStorage(url, {
      namespace,
      maxEntries: 100_000,
      timeoutMs,
      // A lost connection is reported here while a call is in flight; the call's own error names it.
      report: (error) => {
        lastReport = error;
      },
    }),
  );
  let opened: Awaited<typeof opening>;
  try {
    opened = await within(opening, timeoutMs, `${label} (opening)`);
  } catch (error) {
    opening
      .then(
        (s) => (isRequestScoped(s) ? undefined : s.close?.()),
        () => {},
      )
      .catch(() => {});
    if (error instanceof VisitorStateError && !(error instanceof StorageError)) throw error;
    throw new StorageError(`${label} could not be opened`, { cause: lastReport ?? error });
  }
  if (isRequestScoped(opened)) {
    throw new ConfigError(`${label} keeps state in each visitor's cookies, out of reach of the command line`);
  }
  const raw = opened;
  const storage = {} as Record<string, unknown>;
  for (const method of METHODS) {
    const call = raw[method] as ((...args: unknown[]) => Promise<unknown>) | undefined;
    if (typeof call !== 'function') continue;
    storage[method] = (...args: unknown[]) =>
      within(
        Promise.resolve().then(() => call.apply(raw, args)),
        timeoutMs,
        `${label} (${method})`,
      ).catch((error: unknown) => {
        // A driver's own error ("The client is offline") is named after the call, with what the connection reported.
        if (error instanceof VisitorStateError && error.cause !== undefined) throw error;
        const message = error instanceof StorageError ? error.message : `${label} failed (${method})`;
        throw new StorageError(message, { cause: lastReport ?? error });
      });
  }
  const bounded = storage as unknown as Storage;
  return {
    label,
    namespace,
    storage: bounded,
    need(capability, command) {
      const method = bounded[capability];
      if (typeof method !== 'function') {
        throw new ConfigError(
          `${label} cannot ${CAN[capability]} (it has no Storage.${capability}), which ${command} needs`,
        );
      }
      return method as never;
    },
    async close() {
      if (raw.close) await within(Promise.resolve(raw.close()), timeoutMs, `${label} (close)`).catch(() => {});
    },
  };
}

const CAN: Record<Capability, string> = {
  getMany: 'read several bins at once',
  add: 'set a bin only where it is absent',
  update: 'update a bin atomically',
  bins: "list a visitor's bins",
  entries: "list a visitor's bins with their expiry",
  visitors: 'list its visitors',
  sweep: 'remove expired entries',
  peek: 'read synchronously',
  close: 'close',
};
