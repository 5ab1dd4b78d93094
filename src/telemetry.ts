import type { Attributes, Counter, Histogram, Meter, Tracer } from '@opentelemetry/api';
import { ConfigError } from './errors.js';

type Api = typeof import('@opentelemetry/api');

/**
 * The instruments visitor-state records into, made from the global OpenTelemetry providers.
 * Names follow the semantic conventions where one exists (`db.client.operation.duration`,
 * `db.system.name`, `db.operation.name`, `error.type`); the others are `visitor_state.*`.
 * No attribute ever holds a visitor ID, a user ID, an address, a User-Agent or a bin's data.
 */
export interface Instruments {
  readonly api: Api;
  /** `undefined` when no tracer provider is registered: no span is made. */
  readonly tracer: Tracer | undefined;
  /** `db.client.operation.duration`, in seconds, by `db.system.name` and `db.operation.name`. */
  readonly duration: Histogram;
  /** `visitor_state.store.failures`, by `db.system.name`, `db.operation.name` and `error.type`. */
  readonly failures: Counter;
  /** `visitor_state.bin.reads`, by `db.system.name` and `visitor_state.bin.result` (`hit` or `miss`). */
  readonly reads: Counter;
  /** `visitor_state.bin.writes`, by `db.system.name` and `db.operation.name`. */
  readonly writes: Counter;
  /** `visitor_state.resolutions`, by `visitor_state.source`. */
  readonly resolutions: Counter;
}

const SCOPE = 'visitor-state';
// The semantic conventions' advised buckets for db.client.operation.duration, in seconds.
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];

let loading: Promise<Api | undefined> | undefined;
/** The API once loaded: `null` when it is not installed, `undefined` until the import settles. */
let loaded: Api | null | undefined;
let made: { readonly meter: Meter; readonly tracing: boolean; readonly instruments: Instruments } | undefined;
/** The instruments once an SDK was found; read on the request path, so a plain variable. */
let active: Instruments | undefined;

const isNotFound = (error: unknown) => {
  const code = (error as { code?: unknown } | undefined)?.code;
  return (
    code === 'ERR_MODULE_NOT_FOUND' ||
    code === 'MODULE_NOT_FOUND' ||
    // workerd, for a module that is not in the Worker's bundle
    (error instanceof Error && error.message.startsWith('No such module'))
  );
};

/**
 * Loads `@opentelemetry/api` once, when the first store opens; `undefined` when it is not
 * installed. Nothing of it is loaded, and nothing is recorded, until then.
 */
function loadApi(): Promise<Api | undefined> {
  // A specifier in a variable: bundlers for workers leave an optional peer alone instead of failing.
  const name = '@opentelemetry/api';
  loading ??= (import(name) as Promise<Api>).then(
    (api) => {
      loaded = api;
      return api;
    },
    (error: unknown) => {
      if (isNotFound(error)) {
        loaded = null;
        return undefined;
      }
      throw new ConfigError('@opentelemetry/api is installed but could not be loaded', { cause: error });
    },
  );
  return loading;
}

/**
 * The instruments, when `@opentelemetry/api` is installed and a meter or tracer provider is
 * registered; else `undefined`, and the library records nothing at all (with the API but no
 * SDK, every call would be a no-op that still costs). Providers are looked up when a store
 * opens: register the SDK before `createVisitorState()`.
 *
 * @example
 * ```ts
 * const instruments = await telemetry();
 * instruments?.resolutions.add(1, { 'visitor_state.source': 'cookie' });
 * ```
 */
export async function telemetry(): Promise<Instruments | undefined> {
  const api = await loadApi();
  return api ? instrumentsFrom(api) : undefined;
}

/**
 * What {@link telemetry} resolves to, at once, once the API's import has settled (`null` before):
 * a store opened after that is wrapped, or left alone, without waiting for a promise.
 *
 * @example
 * ```ts
 * const now = telemetryNow();
 * if (now === null) await telemetry();
 * ```
 */
export function telemetryNow(): Instruments | undefined | null {
  if (loaded === undefined) return null;
  return loaded === null ? undefined : instrumentsFrom(loaded);
}

function instrumentsFrom(api: Api): Instruments | undefined {
  const meter = api.metrics.getMeter(SCOPE);
  const delegate = (api.trace.getTracerProvider() as { getDelegate?: () => unknown }).getDelegate?.();
  // A fresh proxy's delegate is the API's no-op provider: the way to tell "no SDK" through the public API.
  const tracing = delegate !== undefined && delegate !== new api.ProxyTracerProvider().getDelegate();
  if (meter === api.createNoopMeter() && !tracing) return undefined;
  if (made?.meter !== meter || made.tracing !== tracing) {
    made = { meter, tracing, instruments: instrumentsOf(api, meter, tracing) };
  }
  active = made.instruments;
  return active;
}

function instrumentsOf(api: Api, meter: Meter, tracing: boolean): Instruments {
  return {
    api,
    tracer: tracing ? api.trace.getTracer(SCOPE) : undefined,
    duration: meter.createHistogram('db.client.operation.duration', {
      description: 'Duration of visitor-state store calls',
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    }),
    failures: meter.createCounter('visitor_state.store.failures', {
      description: 'Store calls that failed, by kind of failure',
      unit: '{failure}',
    }),
    reads: meter.createCounter('visitor_state.bin.reads', {
      description: "Reads of the application's bins that reached a store, found or not",
      unit: '{read}',
    }),
    writes: meter.createCounter('visitor_state.bin.writes', {
      description: "Writes and deletes of the application's bins",
      unit: '{write}',
    }),
    resolutions: meter.createCounter('visitor_state.resolutions', {
      description: 'Visitors resolved, by the resolver that knew them',
      unit: '{resolution}',
    }),
  };
}

const bySource = new Map<string, Attributes>();

/**
 * Counts one resolution by its source (`cookie`, `auth`, `fingerprint`, `new`, a custom
 * resolver's name). Costs one comparison when telemetry is off.
 *
 * @example
 * ```ts
 * countResolution(resolution.source);
 * ```
 */
export function countResolution(source: string): void {
  if (active === undefined) return;
  let attributes = bySource.get(source);
  if (!attributes) {
    attributes = { 'visitor_state.source': source };
    if (bySource.size < 100) bySource.set(source, attributes);
  }
  active.resolutions.add(1, attributes);
}

/**
 * The kind of a failure for `error.type`: a driver's error code (`ECONNREFUSED`, a PostgreSQL
 * SQLSTATE) where it has one, else the error's class name. Never its message, which may quote
 * a key or a value.
 */
export function errorType(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 4; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^[A-Za-z0-9_]{1,40}$/.test(code) && !code.startsWith('ERR_VISITOR_STATE'))
      return code;
    current = current.cause ?? (current instanceof AggregateError ? current.errors[0] : undefined);
  }
  return error instanceof Error ? error.name : '_OTHER';
}
