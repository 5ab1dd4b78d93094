import { createKeyRing, randomId as defaultRandomId } from './crypto.js';
import { type Duration, toMs } from './duration.js';
import { ConfigError, CookieError, type ErrorHook, StorageError, VisitorStateError } from './errors.js';
import {
  type NodeLikeRequest,
  type NodeLikeResponse,
  nodeRequestView,
  nodeResponseView,
  type RequestView,
  type ResponseView,
} from './http.js';
import { createChain, type Placement, type Resolution } from './identity/chain.js';
import { createProxyTrust, type TrustProxy } from './identity/client-ip.js';
import { RequestContext } from './identity/context.js';
import { cookieResolver } from './identity/cookie.js';
import type { Resolver } from './identity/types.js';
import { recentMap } from './recent-map.js';
import type { Routed } from './state/cache.js';
import type { StoreOption } from './state/registry.js';
import { type BinRule, createRouter, type StoreHandle } from './state/router.js';
import type { RequestScopedStorage, Storage } from './state/storage.js';
import { countResolution } from './telemetry.js';
import {
  createVisitor,
  holdsState,
  type LinkPolicy,
  linkKey,
  linkStore,
  unlinkUser,
  type Visitor,
  type VisitorChange,
} from './visitor.js';

/** Options of {@link createVisitorState}. */
export interface VisitorStateOptions {
  /**
   * Signs the visitor cookie and keys every derived ID. A list rotates: the first signs,
   * all verify, and a cookie signed by an older one is re-signed. At least 32 characters;
   * required when `NODE_ENV=production`.
   * @default process.env.VISITOR_STATE_SECRET, else (outside production) a random secret per process
   */
  secret?: string | readonly string[];
  /**
   * Where bins live: `'memory:'`, `'sqlite://./path.sqlite'`, `'redis://host:6379'`,
   * `'postgres://…'`, `'cookie:'`, a scheme from `registerStorage`, a Keyv instance or a storage object.
   * @default 'memory:'
   */
  store?: StoreOption;
  /**
   * Default lifetime of a bin.
   * @default '30d'
   */
  ttl?: Duration;
  /**
   * The resolver chain, in order; the first that knows the visitor wins.
   * @default [cookieResolver()]
   */
  resolvers?: readonly Resolver[];
  /**
   * Proxies whose `X-Forwarded-For`, `Forwarded` and `X-Forwarded-Proto` are believed: CIDRs,
   * `'loopback'`, `'private'`, `'linklocal'`, a hop count, or a function.
   * @default undefined: no proxy is trusted
   */
  trustProxy?: TrustProxy;
  /**
   * Keeps several applications apart in one store.
   * @default 'vs'
   */
  namespace?: string;
  /**
   * How long a store call may take before it counts as failed.
   * @default 250
   */
  timeout?: Duration;
  /**
   * Largest bin, in bytes of JSON.
   * @default 65536
   */
  maxValueBytes?: number;
  /**
   * Bound of the `memory:` store, in entries.
   * @default 100000
   */
  maxEntries?: number;
  /**
   * Bound of the `memory:` store, in bytes of what it holds.
   * @default 64 MiB
   */
  maxBytes?: number;
  /**
   * Per-bin store and lifetime by name pattern, e.g. `{ 'ui:*': { store: 'cookie:' } }`.
   * @default {}
   */
  bins?: Readonly<Record<string, BinRule>>;
  /**
   * A store to move from: a bin missing from `store` is looked up there and moved.
   * @default undefined
   */
  migrateFrom?: StoreOption;
  /**
   * Runs `sweep()` this often, in the background, for stores without native expiry.
   * @default undefined: sweep only when called
   */
  sweepInterval?: Duration;
  /**
   * What a response that resolved the visitor tells shared caches: `'private'` sets
   * `Cache-Control: private` unless the handler already set a Cache-Control; `'vary'`
   * adds `Vary: Cookie`; `false` adds nothing.
   * @default 'private'
   */
  cacheControl?: 'private' | 'vary' | false;
  /**
   * Receives every failure that visitor-state recovers from: a store down, a resolver that threw.
   * @default a one-line console.warn per failure
   */
  onError?: ErrorHook;
  /**
   * What `visitor.link()` does when the user is already linked to another visitor.
   * @default 'keep'
   */
  linkPolicy?: LinkPolicy;
  /**
   * How long a link between a user and a visitor is kept after its last login.
   * @default '400d'
   */
  linkTtl?: Duration;
  /**
   * Hears when a visitor's ID changes within a request (adopt, rotate) or its state is erased (forget).
   * @default undefined
   */
  onVisitorChange?: (change: VisitorChange) => void;
  /** The clock. @default Date.now */
  now?: () => number;
  /** Mints new visitor IDs. @default 128 random bits, base64url */
  randomId?: () => string;
}

/** What {@link createVisitorState} returns. */
export interface VisitorState {
  /** The visitor of a node:http (or Express) request; resolved once per request. */
  resolve(req: NodeLikeRequest, res?: NodeLikeResponse): Promise<Visitor>;
  /**
   * The same, for adapters that build their own views. `key` identifies the request;
   * `whenDone` is given a function to call once the response is over, so that a request object
   * a framework keeps afterwards (a keep-alive socket holds its last one) does not keep the
   * visitor alive into V8's old generation.
   */
  resolveView(
    request: RequestView,
    response: ResponseView | undefined,
    key?: object,
    whenDone?: (release: () => void) => void,
  ): Promise<Visitor>;
  /** Adds a resolver to the chain, at the end or next to a named one. */
  use(resolver: Resolver, placement?: Placement): VisitorState;
  /** The visitor cookie's name. */
  readonly cookieName: string | undefined;
  /**
   * The cookies a shared cache must pass to the application on paths that use visitor
   * state (and may strip elsewhere): their names or name prefixes, and one pattern for them,
   * e.g. `^(vsid|vs_data\.[0-9]+)$` for a Varnish VCL.
   */
  readonly cacheCookies: { readonly names: readonly string[]; readonly pattern: string };
  /** Forgets the link of a user, e.g. when the account is deleted. */
  unlink(userId: string | number): Promise<void>;
  /**
   * Resolves when every store (typed bins' included) is open and answers a read within the
   * `timeout`; rejects with the `ConfigError` of one whose options cannot work, or a
   * `StorageError` for one that cannot be reached in time. Requests work without it (a store
   * down costs its state, not the request): call it at start to fail fast.
   */
  ready(): Promise<void>;
  /** Removes expired entries from stores without native expiry; resolves to how many. */
  sweep(): Promise<number>;
  /** Stops the sweep timer and closes store connections. */
  close(): Promise<void>;
}

const MIN_SECRET = 32;
const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
let warnedRandomSecret = false;

function secretsFrom(option: string | readonly string[] | undefined): string[] {
  const given = option ?? process.env.VISITOR_STATE_SECRET;
  const list = given === undefined ? [] : typeof given === 'string' ? [given] : [...given];
  const production = process.env.NODE_ENV === 'production';
  if (list.length === 0) {
    if (production) {
      throw new ConfigError(
        `secret is required in production: set VISITOR_STATE_SECRET to at least ${MIN_SECRET} random characters (openssl rand -base64 32)`,
      );
    }
    if (!warnedRandomSecret) {
      warnedRandomSecret = true;
      console.warn(
        'visitor-state: no secret set; using a random one for this process, so visitor cookies will not survive a restart. Set VISITOR_STATE_SECRET.',
      );
    }
    return [defaultRandomId() + defaultRandomId()];
  }
  for (const secret of list) {
    if (typeof secret !== 'string' || secret.length === 0 || (production && secret.length < MIN_SECRET)) {
      throw new ConfigError(
        `secret must be at least ${MIN_SECRET} characters; set VISITOR_STATE_SECRET to e.g. the output of: openssl rand -base64 32`,
      );
    }
  }
  return list;
}

/**
 * What caused an error, down its `cause` chain, as short as a log line wants it: a system
 * error's code (`ECONNREFUSED`), a driver's message (`role "x" does not exist`). An
 * AggregateError (a connection tried on IPv4 and IPv6) gives its first error.
 */
export function causeOf(error: unknown): string | undefined {
  const seen: string[] = [];
  let current = (error as { cause?: unknown } | undefined)?.cause;
  for (let depth = 0; current !== undefined && current !== null && depth < 8; depth++) {
    if (current instanceof AggregateError && current.errors.length > 0 && !current.message) current = current.errors[0];
    const code = (current as { code?: unknown }).code;
    const message = current instanceof Error ? current.message : String(current);
    const text =
      typeof code === 'string' && !message.includes(code) && !/^\d/.test(code) ? `${code}: ${message}` : message;
    if (text && !seen.some((earlier) => earlier.includes(text))) seen.push(text);
    current = (current as { cause?: unknown }).cause;
  }
  return seen.length > 0 ? seen.join(' <- ') : undefined;
}

const warn: ErrorHook = (error: VisitorStateError) => {
  const cause = causeOf(error);
  console.warn(`visitor-state: ${error.code}: ${error.message}${cause ? ` (cause: ${cause})` : ''}`);
};

/**
 * Opening a store (a connection, a TLS handshake, a schema) may take this many timeouts; the
 * read that follows it, one.
 */
const OPENING = 20;

/** Resolves once the store is open (within {@link OPENING} timeouts) and answers a read (within one). */
async function opensAndAnswers(handle: StoreHandle, timeoutMs: number): Promise<void> {
  const bound = timeoutMs * OPENING;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new StorageError(`${handle.label} did not open within ${bound} ms`)), bound);
  });
  try {
    await Promise.race([
      handle.opened.catch((error: unknown) => {
        if (error instanceof VisitorStateError) throw error;
        throw new StorageError(`${handle.label} could not be opened`, { cause: error });
      }),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
  await handle.shared()?.probe();
}

/**
 * Wires the resolver chain, the stores and the options into one object that resolves the
 * visitor of each request.
 *
 * @example
 * ```ts
 * const visitors = createVisitorState({ secret: process.env.VISITOR_STATE_SECRET, store: 'sqlite://./data/vs.sqlite' });
 * http.createServer(async (req, res) => {
 *   const visitor = await visitors.resolve(req, res);
 *   await visitor.cache.set('mymod:geo', { city: 'Lyon' });
 *   res.end(visitor.id);
 * });
 * ```
 */
export function createVisitorState(options: VisitorStateOptions = {}): VisitorState {
  const keys = createKeyRing(secretsFrom(options.secret));
  const onError = options.onError ?? warn;
  const now = options.now ?? Date.now;
  const proxy = createProxyTrust(options.trustProxy);
  const chain = createChain(
    options.resolvers ?? [cookieResolver()],
    onError,
    options.randomId ?? defaultRandomId,
    (id) => holdsState(router, now, id),
  );
  const namespace = options.namespace ?? 'vs';
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(namespace)) {
    throw new ConfigError(`namespace ${JSON.stringify(namespace)} must be 1 to 64 characters of A-Z a-z 0-9 _ . -`);
  }
  const maxValueBytes = options.maxValueBytes ?? 65_536;
  if (!Number.isInteger(maxValueBytes) || maxValueBytes < 1)
    throw new ConfigError('maxValueBytes must be a positive whole number of bytes');
  const defaultTtlMs = toMs(options.ttl ?? '30d', 'ttl');
  const cacheControl = options.cacheControl ?? 'private';

  const timeoutMs = toMs(options.timeout ?? 250, 'timeout');
  const router = createRouter({
    store: options.store ?? 'memory:',
    bins: options.bins ?? {},
    migrateFrom: options.migrateFrom,
    storageOptions: {
      namespace,
      maxEntries: options.maxEntries ?? 100_000,
      ...(options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes }),
      timeoutMs,
      now,
      report: (error) => onError(error as VisitorStateError),
    },
    timeoutMs,
    defaultTtlMs,
    onError,
  });
  const settings = { router, defaultTtlMs, maxValueBytes, named: recentMap<string, Routed>(1_000) };
  const env = {
    router,
    settings,
    cookie: () => chain.cookie,
    randomId: options.randomId ?? defaultRandomId,
    onError,
    onVisitorChange: options.onVisitorChange,
    linkPolicy: options.linkPolicy ?? 'keep',
    linkTtlMs: toMs(options.linkTtl ?? '400d', 'linkTtl'),
  } as const;
  if (env.linkPolicy !== 'keep' && env.linkPolicy !== 'adopt') {
    throw new ConfigError(`linkPolicy must be 'keep' or 'adopt'; got ${JSON.stringify(env.linkPolicy)}`);
  }
  const linkedVisitor = async (userId: string | number): Promise<string | undefined> => {
    const found = await linkStore(router)?.get(linkKey({ keys }, userId), '@link');
    return typeof found === 'string' ? found : undefined;
  };
  // The visitor rides on its key (the response for resolve(), the adapter's request object for
  // resolveView()) under a symbol of this instance, which is cheaper than a WeakMap entry; the
  // WeakMap stays for keys that cannot take a property. An adapter whose key outlives the
  // response passes whenDone, so the entry is let go then and the visitor dies young.
  const mark = Symbol('visitor-state');
  type Holder = { [mark]?: Promise<Visitor> | undefined };
  const resolved = new WeakMap<object, Promise<Visitor>>();
  const forget = (key: object) => {
    const holder = key as Holder;
    if (holder[mark]) holder[mark] = undefined;
    resolved.delete(key);
  };

  const shared = { proxy, keys, now, linkedVisitor };

  const respond = (resolution: Resolution, ctx: RequestContext, response: ResponseView | undefined): Visitor => {
    const cookie = chain.cookie;
    if (response) {
      if (resolution.issue !== undefined && cookie) {
        if (response.headersSent) {
          onError(
            new CookieError('the visitor cookie could not be sent: resolve the visitor before writing the response'),
          );
        } else {
          response.setCookie(cookie.cookieName, cookie.serialize(resolution.issue, ctx));
          const insecure = cookie.insecureIssue?.(ctx);
          if (insecure) onError(insecure);
        }
      }
      if (!response.headersSent) {
        if (cacheControl === 'private' && response.getHeader('cache-control') === undefined) {
          response.setHeader('cache-control', 'private');
        } else if (cacheControl === 'vary') {
          response.appendHeader('vary', 'Cookie');
        }
      }
    }
    countResolution(resolution.source);
    return createVisitor(resolution, env, ctx, response, ctx);
  };

  // One promise per resolution: the chain answers synchronously for a returning visitor, and
  // every promise or await saved here is saved on every request.
  const resolveVisitor = (request: RequestView, response: ResponseView | undefined): Promise<Visitor> => {
    try {
      const ctx = new RequestContext(request, response, shared);
      const resolution = chain.resolve(ctx);
      return resolution instanceof Promise
        ? resolution.then((settled) => respond(settled, ctx, response))
        : Promise.resolve(respond(resolution, ctx, response));
    } catch (error) {
      return Promise.reject(error);
    }
  };

  /** The handle's storage once open, without waiting past the timeout for one that may never open. */
  const openedWithin = async (handle: StoreHandle) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((done) => {
      timer = setTimeout(() => done(undefined), timeoutMs);
    });
    const storage = await Promise.race([handle.opened.catch(() => undefined), late]);
    clearTimeout(timer);
    return storage;
  };

  const sweep = async (): Promise<number> => {
    let removed = 0;
    for (const handle of router.handles()) {
      const storage = await openedWithin(handle);
      if (storage && 'sweep' in storage && typeof storage.sweep === 'function') {
        try {
          removed += await storage.sweep();
        } catch (error) {
          onError(new StorageError(`${handle.label} failed to sweep`, { cause: error }));
        }
      }
    }
    return removed;
  };

  const sweepTimer =
    options.sweepInterval === undefined
      ? undefined
      : setInterval(() => void sweep(), toMs(options.sweepInterval, 'sweepInterval'));
  // In workerd setInterval returns a number, which has no unref.
  (sweepTimer as { unref?: () => void } | undefined)?.unref?.();

  const state: VisitorState = {
    resolve(req, res) {
      // The memo rides on the response when there is one: node:http lets go of a response once
      // it is over, while a keep-alive socket holds on to its last request until the next one.
      const key = res ?? req;
      return (
        (key as Holder)[mark] ?? state.resolveView(nodeRequestView(req), res ? nodeResponseView(res) : undefined, key)
      );
    },
    resolveView(request, response, key = request.raw as object, whenDone) {
      if (typeof key !== 'object' || key === null) return resolveVisitor(request, response);
      const holder = key as Holder;
      const extensible = Object.isExtensible(key);
      let visitor = holder[mark] ?? (extensible ? undefined : resolved.get(key));
      if (!visitor) {
        visitor = resolveVisitor(request, response);
        if (extensible) holder[mark] = visitor;
        else resolved.set(key, visitor);
        whenDone?.(() => forget(key));
      }
      return visitor;
    },
    use(resolver, placement) {
      chain.use(resolver, placement);
      return state;
    },
    get cookieName() {
      return chain.cookie?.cookieName;
    },
    get cacheCookies() {
      const names = [
        ...(chain.cookie ? [chain.cookie.cookieName] : []),
        ...router.cookieStores().map((name) => `${name}.*`),
      ];
      const alternatives = names.map((name) =>
        name.endsWith('.*') ? `${escapeRegExp(name.slice(0, -2))}\\.[0-9]+` : escapeRegExp(name),
      );
      return { names, pattern: `^(${alternatives.join('|')})$` };
    },
    async unlink(userId) {
      const links = linkStore(router);
      if (links) await unlinkUser(links, linkKey({ keys }, userId));
    },
    async ready() {
      await Promise.all(router.handles().map((handle) => opensAndAnswers(handle, timeoutMs)));
    },
    sweep,
    async close() {
      clearInterval(sweepTimer);
      await Promise.all(
        router.handles().map(async (handle) => {
          // A store that opens after close() is closed once it does.
          const closeIt = (storage: Storage | RequestScopedStorage) =>
            'close' in storage && typeof storage.close === 'function' ? storage.close() : undefined;
          if (!(await openedWithin(handle))) void handle.opened.then(closeIt, () => {});
          else await closeIt(await handle.opened);
        }),
      );
    },
  };
  return state;
}
