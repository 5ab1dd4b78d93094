import { ConfigError, CookieError, type ErrorHook, StorageError } from './errors.js';
import type { ResponseView } from './http.js';
import { userIdOf } from './identity/auth.js';
import type { Resolution } from './identity/chain.js';
import type { CookieResolver } from './identity/cookie.js';
import type { Confidence, ResolverContext } from './identity/types.js';
import { type RecentMap, recentMap } from './recent-map.js';
import { type BinCache, type CacheSettings, createBinCache } from './state/cache.js';
import type { BinStore, Router, StoreHandle, StoresOf } from './state/router.js';
import type { StorageRequest } from './state/storage.js';

/** What `link()` did. */
export type LinkOutcome = 'linked' | 'already' | 'kept' | 'adopted';

/**
 * When a user logs in on a device whose visitor is not the one linked to the user:
 * `'keep'` leaves each device its own visitor; `'adopt'` moves the device onto the linked
 * visitor, bringing along the bins that visitor lacks.
 */
export type LinkPolicy = 'keep' | 'adopt';

/** What the `onVisitorChange` hook hears. */
export interface VisitorChange {
  readonly type: 'adopt' | 'rotate' | 'forget';
  readonly from: string;
  /** The ID the visitor now has; the same as `from` for `'forget'`. */
  readonly to: string;
}

/** The visitor of one request. */
export interface Visitor {
  /** A stable, opaque ID. */
  readonly id: string;
  /** `'cookie'`, `'auth'`, `'fingerprint'`, `'new'`, `'link'` after an adoption, or a custom resolver's name. */
  readonly source: string;
  readonly confidence: Confidence;
  /** The client address as believed through trusted proxies; for use now, not for storing. */
  readonly clientIp: string | undefined;
  /** The visitor's bins. */
  readonly cache: BinCache;
  /**
   * Records, right after the application's own login, that this verified user is this
   * visitor: a later login on a device without a visitor cookie resolves to it, and with
   * policy `'adopt'` a device with another visitor moves onto it. Only this user's link
   * moves; the bins of the visitor left behind come along only when no other user is linked
   * to it. A second user's first login on a visitor linked to another user records nothing
   * (`'kept'`). Rejects with a `BinError` for a user ID that is not a non-empty string or a
   * finite number (`1` and `'1'` are one user), and an adoption after the response headers
   * are sent rejects with a `CookieError` before moving anything.
   */
  link(userId: string | number, options?: { policy?: LinkPolicy }): Promise<LinkOutcome>;
  /**
   * Moves the visitor's bins to a new random ID and re-issues the cookie; the old ID keeps
   * nothing. Call it at login when the state must not follow an ID that someone else may
   * have planted (session fixation). Moved bins start a fresh default lifetime. After the
   * response headers are sent it rejects with a `CookieError` and moves nothing.
   */
  rotate(): Promise<void>;
  /**
   * Deletes every bin of this visitor and its links, and clears its cookies: the erasure a
   * privacy request needs. On a request that a fingerprint resolved, it erases both the
   * client's own ID and the shared fingerprint ID, since what this request stored went under
   * both; others behind that fingerprint lose what they shared there (at most its `ttl` old).
   *
   * @example
   * ```ts
   * app.post('/privacy/erase', async (req, res) => {
   *   await req.visitor.forget();
   *   res.sendStatus(204);
   * });
   * ```
   */
  forget(): Promise<void>;
}

/** What every visitor of one VisitorState shares. */
export interface VisitorEnv {
  readonly router: Router;
  readonly settings: CacheSettings;
  readonly cookie: () => CookieResolver | undefined;
  readonly randomId: () => string;
  readonly onError: ErrorHook;
  readonly onVisitorChange: ((change: VisitorChange) => void) | undefined;
  readonly linkPolicy: LinkPolicy;
  readonly linkTtlMs: number;
}

/** Where visitor-state keeps its own records: bins that applications cannot name (ARCHITECTURE.md). */
const LINK = '@link';
/** One back-reference per linked user, under the visitor: `@link:` + the user's link key. */
const BACK_REF = '@link:';
/** The list of link keys that earlier versions kept per visitor: read, never written. */
const LEGACY_LINKS = '@links';
/** Written under a shared ID (a fingerprint) when a request first stores a bin there. */
export const HOLDS_STATE = '@shared';

/** The record key of a user: an HMAC, so the store never holds the user ID. Throws a BinError for a bad user ID. */
export const linkKey = (ctx: Pick<ResolverContext, 'keys'>, userId: unknown): string =>
  `L${ctx.keys.mac('link', userIdOf(userId), 16)}`;

/** The shared store that holds links; `undefined` when the main store lives in cookies. */
export function linkStore(router: Router): BinStore | undefined {
  return router.main.shared();
}

/**
 * The users' link keys that name `visitorId`, found through its bins: one `@link:` entry per
 * link, and the list an earlier version kept. Each is checked against the user's own record,
 * so a back-reference left behind by a link that moved on is not followed.
 */
async function linksOf(links: BinStore, visitorId: string): Promise<string[]> {
  const names = await links.bins(visitorId);
  const keys = new Set(names.filter((name) => name.startsWith(BACK_REF)).map((name) => name.slice(BACK_REF.length)));
  if (names.includes(LEGACY_LINKS)) {
    const legacy = await links.get(visitorId, LEGACY_LINKS);
    if (Array.isArray(legacy)) for (const key of legacy) if (typeof key === 'string') keys.add(key);
  }
  const named = await Promise.all(
    [...keys].map(async (key) => ((await links.get(key, LINK)) === visitorId ? key : '')),
  );
  return named.filter((key) => key !== '');
}

/**
 * Removes a user's link, and the back-reference under the visitor it named: `visitors.unlink()`.
 *
 * @example
 * ```ts
 * await unlinkUser(linkStore(router)!, linkKey({ keys }, 'user-42'));
 * ```
 */
export async function unlinkUser(links: BinStore, key: string): Promise<void> {
  // One atomic read-and-delete, so a login that moves the link meanwhile loses neither record's
  // match: the back-reference removed is the one under the visitor the link named when it went.
  let visitorId: unknown;
  try {
    await links.update(
      key,
      LINK,
      (current) => {
        visitorId = current;
        return undefined;
      },
      1,
    );
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    // A store without update: read, then delete. A back-reference left behind is never followed.
    visitorId = await links.get(key, LINK);
    await links.delete(key, LINK);
  }
  if (typeof visitorId === 'string') await links.delete(visitorId, BACK_REF + key);
}

/** Shared IDs that this process knows to hold state, with until when it trusts that, per router. */
const knownHeld = new WeakMap<Router, RecentMap<string, number>>();
/**
 * How long a "holds state" answer is trusted without asking the store again. A cookie-less
 * client comes back within minutes; after an erasure elsewhere, a first visit may be lent an
 * empty shared ID for at most this long, which still gives the client a cookie of its own.
 */
const HELD_TRUSTED_MS = 60_000;
const HELD_KEPT = 10_000;

const heldOf = (router: Router): RecentMap<string, number> => {
  let held = knownHeld.get(router);
  if (!held) {
    held = recentMap(HELD_KEPT);
    knownHeld.set(router, held);
  }
  return held;
};

/**
 * Whether a shared ID holds state: asked for a first visit behind a fingerprint (a cookie-less
 * request), never on the cookie path. One `get` of the `@shared` record; a "yes" is remembered
 * for a minute, so a returning cookie-less client is answered without a store call.
 */
export function holdsState(router: Router, now: () => number, id: string): boolean | Promise<boolean> {
  const held = heldOf(router);
  const until = held.get(id);
  if (until !== undefined && until > now()) return true;
  const store = linkStore(router);
  if (store === undefined) return false;
  return store.get(id, HOLDS_STATE).then((found) => {
    if (found !== undefined) held.set(id, now() + HELD_TRUSTED_MS);
    return found !== undefined;
  });
}

type VisitorActions = Pick<Visitor, 'link' | 'rotate' | 'forget'>;

type Owner = {
  readonly id: string;
  readonly own: string | undefined;
  readonly shared: string | undefined;
  readonly maxTtl: number | undefined;
};

// A class rather than an object literal: V8 gives each object literal that has a `get` a
// hidden class of its own, about a microsecond per request. It holds what link, rotate and
// forget need, and makes them on first use: most requests never call them.
class LiveVisitor implements Visitor {
  owner: Owner;
  source: string;
  confidence: Confidence;
  cache: BinCache;
  readonly env: VisitorEnv;
  readonly ctx: ResolverContext;
  readonly response: ResponseView | undefined;
  readonly stores: StoresOf;
  #actions: VisitorActions | undefined;

  constructor(
    resolution: Resolution,
    env: VisitorEnv,
    ctx: ResolverContext,
    response: ResponseView | undefined,
    stores: StoresOf,
  ) {
    this.owner = resolution;
    this.source = resolution.source;
    this.confidence = resolution.confidence;
    this.env = env;
    this.ctx = ctx;
    this.response = response;
    this.stores = stores;
    this.cache = this.#cacheOf(resolution, resolution.fresh && response?.headersSent === true);
  }

  /** The bin cache of one owner; the cookie path takes the first line. */
  #cacheOf(owner: Owner, late: boolean): BinCache {
    // With a shared copy, `id` is the client's own and its lifetime is not capped.
    const mine = owner.shared === undefined ? owner : { id: owner.id, own: undefined, maxTtl: undefined };
    const cache = createBinCache(mine, this.env.settings, this.stores);
    if (late) {
      // The response is out, so the client will never carry this ID: its writes would be lost.
      return refusingWrites(
        cache,
        'the visitor was first resolved after the response headers were sent, so its new ID cannot reach the client and this write would be lost; use the visitor (resolve it or read a bin) before writing the response',
      );
    }
    const shared = owner.shared ?? (owner.own === undefined ? undefined : owner.id);
    if (shared === undefined) return cache;
    const mark = markOnce(this.env.router, shared, owner.maxTtl ?? this.env.settings.defaultTtlMs, this.ctx.now);
    const copy =
      owner.shared === undefined
        ? undefined
        : createBinCache({ id: owner.shared, own: undefined, maxTtl: owner.maxTtl }, this.env.settings, this.stores);
    return writingShared(cache, copy, mark);
  }

  get id(): string {
    return this.owner.id;
  }

  get clientIp(): string | undefined {
    return this.ctx.clientIp;
  }

  /** Makes this request's visitor the one with `id`, with a bin cache of its own. */
  become(id: string, source: string, confidence: Confidence): void {
    this.owner = { id, own: undefined, shared: undefined, maxTtl: undefined };
    this.source = source;
    this.confidence = confidence;
    this.cache = this.#cacheOf(this.owner, false);
  }

  link(userId: string | number, options?: { policy?: LinkPolicy }): Promise<LinkOutcome> {
    this.#actions ??= actionsOf(this);
    return this.#actions.link(userId, options);
  }

  rotate(): Promise<void> {
    this.#actions ??= actionsOf(this);
    return this.#actions.rotate();
  }

  forget(): Promise<void> {
    this.#actions ??= actionsOf(this);
    return this.#actions.forget();
  }
}

/** Writes the `@shared` record under a shared ID once per request, after the first write there. */
function markOnce(router: Router, sharedId: string, ttlMs: number, now: () => number): () => Promise<void> {
  let marked: Promise<void> | undefined;
  return () => {
    marked ??= (async () => {
      const store = linkStore(router);
      if (!store) return;
      try {
        await store.set(sharedId, HOLDS_STATE, 1, ttlMs);
      } catch (error) {
        // The store's guard has reported it; a write never rejects for a store failure.
        if (error instanceof StorageError) return;
        throw error;
      }
      heldOf(router).set(sharedId, now() + Math.min(ttlMs, HELD_TRUSTED_MS));
    })();
    return marked;
  };
}

/**
 * A bin cache whose writes also go to a second cache (`copy`: the shared ID of a first visit
 * behind a fingerprint that holds no state yet) and then mark the shared ID as holding state.
 * Only fingerprint-resolved requests get one; reads go to `cache` alone.
 */
function writingShared(cache: BinCache, copy: BinCache | undefined, mark: () => Promise<void>): BinCache {
  const marked = async <R>(written: Promise<R>, copied: Promise<unknown> | undefined): Promise<R> => {
    const [result] = await Promise.all([written, copied]);
    await mark();
    return result;
  };
  return {
    get: (bin) => cache.get(bin),
    getMany: (bins) => cache.getMany(bins),
    set: (bin, data, options) => marked(cache.set(bin, data, options), copy?.set(bin, data, options)),
    update: (bin, fn, options) => marked(cache.update(bin, fn, options), copy?.update(bin, fn, options)),
    // A delete marks nothing: it stores nothing under the shared ID.
    async delete(bin) {
      const [result] = await Promise.all([cache.delete(bin), copy?.delete(bin)]);
      return result;
    },
  };
}

/** A bin cache that reads as usual and rejects every write with a CookieError saying why. */
function refusingWrites(cache: BinCache, why: string): BinCache {
  const refuse = () => Promise.reject(new CookieError(why));
  return {
    get: (bin) => cache.get(bin),
    getMany: (bins) => cache.getMany(bins),
    set: refuse,
    update: refuse,
    delete: refuse,
  };
}

export function createVisitor(
  resolution: Resolution,
  env: VisitorEnv,
  ctx: ResolverContext,
  response: ResponseView | undefined,
  storageRequest: StorageRequest,
): Visitor {
  // One binding per store for the whole request, shared by the caches of every ID it has.
  return new LiveVisitor(resolution, env, ctx, response, env.router.forRequest(storageRequest));
}

function actionsOf(state: LiveVisitor): VisitorActions {
  const { env, ctx, response } = state;
  const storeOf = (handle: StoreHandle) => state.stores.of(handle);
  const sendCookie = (id: string | undefined) => {
    const cookie = env.cookie();
    if (!cookie || !response || response.headersSent) return;
    response.setCookie(cookie.cookieName, id === undefined ? cookie.clear(ctx) : cookie.serialize(id, ctx));
  };
  /** Refuses, before anything moves, a change of ID that no cookie could carry to the client any more. */
  const mustReachClient = (what: string) => {
    if (!env.cookie()) return;
    if (!response) {
      throw new CookieError(`${what} needs the response to carry the new visitor cookie; pass it: resolve(req, res)`);
    }
    if (response.headersSent) {
      throw new CookieError(
        `${what} after the response headers were sent would move the state to an ID no cookie can carry; nothing was moved, call it before writing the response`,
      );
    }
  };

  // Every store the visitor may have bins in; a store that cannot list them refuses (ConfigError).
  const stores = () => Promise.all(env.router.handles().map(storeOf));

  /**
   * Every application bin of `from`, in every store, written under `to`; a bin keeps what is
   * left of its lifetime where the store tells it (`entries`), else starts the default one.
   * With `ownWins`, a bin `to` already has is kept. The library's `@` records are not copied:
   * links move with moveLinks, and a store's bin index follows the writes.
   */
  const copyAll = async (from: string, to: string, ownWins: boolean) => {
    for (const store of await stores()) {
      const listed = (await store.entries(from)).filter((entry) => !entry.bin.startsWith('@'));
      if (listed.length === 0) continue;
      const names = listed.map((entry) => entry.bin);
      const present = ownWins ? await store.getMany(to, names) : names.map(() => undefined);
      const now = ctx.now();
      await Promise.all(
        listed.map((entry, i) => {
          if (present[i] !== undefined) return undefined;
          const left = entry.expiresAt === undefined ? env.settings.defaultTtlMs : entry.expiresAt - now;
          return left > 0 ? store.set(to, entry.bin, entry.data, left) : undefined;
        }),
      );
    }
  };

  /** Deletes every bin of `id` in every store, the library's `@` records included. */
  const deleteAll = async (id: string) => {
    for (const store of await stores()) {
      const names = await store.bins(id);
      await Promise.all(names.map((name) => store.delete(id, name)));
    }
  };

  /**
   * Points every link that names `from` at `to` (rotate), or removes it (`to` undefined: forget).
   * The new back-reference is written before the link moves, so a forget() of `to` finds it.
   */
  const moveLinks = async (from: string, to: string | undefined) => {
    const links = linkStore(env.router);
    if (!links) return;
    for (const key of await linksOf(links, from)) {
      if (to === undefined) {
        await links.delete(key, LINK);
      } else {
        await links.set(to, BACK_REF + key, 1, env.linkTtlMs);
        await links.set(key, LINK, to, env.linkTtlMs);
      }
      await links.delete(from, BACK_REF + key);
    }
  };

  const changed = (change: VisitorChange) => env.onVisitorChange?.(change);

  const actions: VisitorActions = {
    async link(userId, options = {}) {
      const links = linkStore(env.router);
      if (!links) {
        throw new ConfigError(
          'link() needs a server-side store (memory, SQLite, Redis, PostgreSQL); cookie storage is per device',
        );
      }
      const key = linkKey(ctx, userId);
      if (state.owner.own !== undefined) {
        // A shared (fingerprint) visitor is not this user's: link the client's own ID.
        state.become(state.owner.own, 'cookie', 'high');
      }
      const me = state.owner.id;
      // Users other than this one whose link names this visitor: their state lives here.
      const others = (await linksOf(links, me)).filter((other) => other !== key);
      let linked = (await links.get(key, LINK)) as string | undefined;
      if (linked === undefined) {
        // One visitor, one user: a second user's first login on it records no link, or a
        // later login of that user elsewhere would land on the first user's state.
        if (others.length > 0) return 'kept';
        // The back-reference first: whatever happens next, forget() of this visitor finds the link.
        await links.set(me, BACK_REF + key, 1, env.linkTtlMs);
        if (await links.add(key, LINK, me, env.linkTtlMs)) return 'linked';
        // A login of the same user elsewhere got there first.
        linked = (await links.get(key, LINK)) as string | undefined;
        if (linked === undefined) {
          await links.set(key, LINK, me, env.linkTtlMs);
          return 'linked';
        }
        if (linked !== me) await links.delete(me, BACK_REF + key);
      }
      if (linked === me) {
        await links.set(me, BACK_REF + key, 1, env.linkTtlMs);
        await links.set(key, LINK, me, env.linkTtlMs);
        return 'already';
      }
      if ((options.policy ?? env.linkPolicy) === 'keep') return 'kept';
      mustReachClient('an adoption');
      // Only this user moves: the device goes onto the user's own visitor, and no other link
      // changes. What this visitor holds comes along only when no other user is linked to it;
      // otherwise it is that user's state (a shared kiosk) and stays where it is.
      if (others.length === 0) {
        await copyAll(me, linked, true);
        await deleteAll(me);
      }
      const target = linked;
      state.become(target, 'link', 'high');
      sendCookie(target);
      changed({ type: 'adopt', from: me, to: target });
      return 'adopted';
    },

    async rotate() {
      mustReachClient('rotate()');
      const from = state.owner.own ?? state.owner.id;
      const to = env.randomId();
      await copyAll(from, to, false);
      await moveLinks(from, to);
      await deleteAll(from);
      state.become(to, state.source, state.confidence);
      sendCookie(to);
      changed({ type: 'rotate', from, to });
    },

    async forget() {
      const { id, own, shared } = state.owner;
      for (const each of [id, own, shared]) {
        if (each === undefined) continue;
        await moveLinks(each, undefined);
        await deleteAll(each);
        heldOf(env.router).set(each, 0);
      }
      // Chunks that no bin listed above (an earlier visitor ID's, forged, an older version's) go too.
      await state.stores.clearCookies();
      state.become(id, state.source, state.confidence);
      sendCookie(undefined);
      changed({ type: 'forget', from: id, to: id });
    },
  };
  return actions;
}
