import type { Attributes, Span } from '@opentelemetry/api';
import { errorType, type Instruments, telemetry, telemetryNow } from '../telemetry.js';
import type { StoreOption } from './registry.js';
import { isRequestScoped, type RequestScopedStorage, STORAGE_METHODS, type Storage } from './storage.js';

/** `db.system.name` of a store: the semantic conventions' name where there is one. */
export function systemOf(store: StoreOption): string {
  if (typeof store !== 'string') return 'opts' in store ? 'keyv' : 'custom';
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(store)?.[1]?.toLowerCase() ?? 'custom';
  return SYSTEMS[scheme] ?? scheme;
}

const SYSTEMS: Record<string, string> = {
  redis: 'redis',
  rediss: 'redis',
  postgres: 'postgresql',
  postgresql: 'postgresql',
  sqlite: 'sqlite',
  memory: 'memory',
};

/**
 * The storage as it is when telemetry is off (no `@opentelemetry/api`, or no SDK registered);
 * else the same storage with each call measured. Request-scoped storages (cookies) make no
 * store calls and are left as they are. Once the API's import has settled, a storage opened
 * synchronously comes back synchronously, so a store in this process stays usable at once.
 *
 * @example
 * ```ts
 * const storage = await withTelemetry(openStorage(url, options), url, options.namespace);
 * ```
 */
export function withTelemetry<S extends Storage | RequestScopedStorage>(
  opened: S | Promise<S>,
  store: StoreOption,
  namespace: string,
): S | Promise<S> {
  // A request-scoped store (cookies) is never measured: hand it back as it came, at once, so the
  // router knows at construction that it is one (cacheCookies, ready()).
  if (!(opened instanceof Promise) && isRequestScoped(opened)) return opened;
  const now = telemetryNow();
  if (now === undefined) return opened;
  const wrap = (storage: S, instruments: Instruments | undefined): S =>
    instruments && !isRequestScoped(storage)
      ? (instrumentStorage(storage, instruments, systemOf(store), namespace) as S)
      : storage;
  if (now !== null) return opened instanceof Promise ? opened.then((s) => wrap(s, now)) : wrap(opened, now);
  return Promise.all([opened, telemetry()]).then(([storage, instruments]) => wrap(storage, instruments));
}

type Method = (...args: never[]) => unknown;

/**
 * Wraps each method the storage has (and only those: its capabilities stay the same) so that
 * it records `db.client.operation.duration`, counts failures, bin reads (hit or miss) and
 * writes of the application's bins, and makes a client span per call when a tracer is
 * registered. The library's own `@` records are measured but not counted as bin reads or writes.
 */
export function instrumentStorage(storage: Storage, t: Instruments, system: string, namespace: string): Storage {
  const { api } = t;
  const attributesOf = new Map<string, Attributes>();
  const base = (operation: string): Attributes => {
    let attributes = attributesOf.get(operation);
    if (!attributes) {
      attributes = { 'db.system.name': system, 'db.operation.name': operation, 'db.namespace': namespace };
      attributesOf.set(operation, attributes);
    }
    return attributes;
  };
  const hit = { 'db.system.name': system, 'visitor_state.bin.result': 'hit' };
  const miss = { 'db.system.name': system, 'visitor_state.bin.result': 'miss' };

  const begin = (operation: string): { span: Span | undefined; start: number } => ({
    span: t.tracer?.startSpan(`${operation} ${namespace}`, { kind: api.SpanKind.CLIENT, attributes: base(operation) }),
    start: performance.now(),
  });
  const end = (operation: string, call: { span: Span | undefined; start: number }, error?: unknown) => {
    const seconds = (performance.now() - call.start) / 1000;
    if (error === undefined) {
      t.duration.record(seconds, base(operation));
    } else {
      const type = errorType(error);
      const failed = { ...base(operation), 'error.type': type };
      t.duration.record(seconds, failed);
      t.failures.add(1, failed);
      call.span?.setAttribute('error.type', type);
      call.span?.setStatus({ code: api.SpanStatusCode.ERROR });
    }
    call.span?.end();
  };

  const counted = (operation: string, args: readonly unknown[], result: unknown) => {
    switch (operation) {
      case 'get':
      case 'peek':
        if (!isRecord(args[1])) t.reads.add(1, result === undefined ? miss : hit);
        break;
      case 'getMany': {
        const bins = args[1] as readonly string[];
        const data = result as readonly unknown[];
        for (let i = 0; i < bins.length; i++)
          if (!isRecord(bins[i])) t.reads.add(1, data[i] === undefined ? miss : hit);
        break;
      }
      case 'set':
      case 'add':
      case 'update':
      case 'delete':
        if (!isRecord(args[1])) t.writes.add(1, base(operation));
        break;
    }
  };

  // The contract's methods by name, so a storage made by a class is wrapped too. What is not in the
  // contract (a built-in store's private fast paths) stays behind: every call passes through here.
  const wrapped: Record<string, Method> = {};
  for (const operation of STORAGE_METHODS) {
    const method = storage[operation];
    if (typeof method !== 'function') continue;
    const call = method as (...args: unknown[]) => unknown;
    if (operation === 'peek') {
      wrapped[operation] = ((...args: unknown[]) => {
        const started = begin(operation);
        try {
          const result = call.apply(storage, args);
          end(operation, started);
          counted(operation, args, result);
          return result;
        } catch (error) {
          end(operation, started, error);
          throw error;
        }
      }) as Method;
      continue;
    }
    wrapped[operation] = ((...args: unknown[]) => {
      const started = begin(operation);
      // The driver's own instrumentation, if any, nests under this span.
      const context = started.span ? api.trace.setSpan(api.context.active(), started.span) : api.context.active();
      let running: Promise<unknown>;
      try {
        running = Promise.resolve(api.context.with(context, () => call.apply(storage, args)));
      } catch (error) {
        end(operation, started, error);
        return Promise.reject(error);
      }
      return running.then(
        (result) => {
          end(operation, started);
          counted(operation, args, result);
          return result;
        },
        (error: unknown) => {
          end(operation, started, error);
          throw error;
        },
      );
    }) as Method;
  }
  return wrapped as unknown as Storage;
}

const isRecord = (bin: unknown): boolean => typeof bin === 'string' && bin.startsWith('@');
