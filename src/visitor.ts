import { ConfigError, type ErrorHook } from './errors.js';
import type { ResponseView } from './http.js';
import type { Resolution } from './identity/chain.js';
import type { CookieResolver } from './identity/cookie.js';
import type { Confidence, ResolverContext } from './identity/types.js';
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
   * policy `'adopt'` a device with another visitor moves onto it.
   */
  link(userId: string | number, options?: { policy?: LinkPolicy }): Promise<LinkOutcome>;
  /**
   * Moves the visitor's bins to a new random ID and re-issues the cookie; the old ID keeps
   * nothing. Call it at login when the state must not follow an ID that someone else may
   * have planted (session fixation). Moved bins start a fresh default lifetime.
   */
  rotate(): Promise<void>;
  /** Deletes every bin of this visitor and its links, and clears its cookies: the erasure a privacy request needs. */
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

/** Where visitor-state keeps its own records: bins that applications cannot name. */
const LINK = '@link';
const LINKS = '@links';

/** The record key of a user: an HMAC, so the store never holds the user ID. */
export const linkKey = (ctx: Pick<ResolverContext, 'keys'>, userId: string | number): string =>
  `L${ctx.keys.mac('link', String(userId), 16)}`;

/** The shared store that holds links; `undefined` when the main store lives in cookies. */
export function linkStore(router: Router): BinStore | undefined {
  return router.main.shared();
}

type VisitorActions = Pick<Visitor, 'link' | 'rotate' | 'forget'>;

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
    this.cache = createBinCache(resolution, env.settings, stores);
    this.env = env;
    this.ctx = ctx;
    this.response = response;
    this.stores = stores;
  }

  get id(): string {
    return this.owner.id;
  }

  get clientIp(): string | undefined {
    return this.ctx.clientIp;
  }

  /** Makes this request's visitor the one with `id`, with a bin cache of its own. */
  become(id: string, source: string, confidence: Confidence): void {
    this.owner = { id, own: undefined, maxTtl: undefined };
    this.source = source;
    this.confidence = confidence;
    this.cache = createBinCache(this.owner, this.env.settings, this.stores);
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

type Owner = { readonly id: string; readonly own: string | undefined; readonly maxTtl: number | undefined };

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

  /** Points the user's links that name `from` at `to` (or removes them when `to` is undefined). */
  const moveLinks = async (from: string, to: string | undefined) => {
    const links = linkStore(env.router);
    if (!links) return;
    const keys = ((await links.get(from, LINKS)) as string[] | undefined) ?? [];
    await Promise.all(
      keys.map(async (key) => {
        if ((await links.get(key, LINK)) !== from) return;
        if (to === undefined) await links.delete(key, LINK);
        else await links.set(key, LINK, to, env.linkTtlMs);
      }),
    );
    if (to !== undefined && keys.length > 0) await links.set(to, LINKS, keys, env.linkTtlMs);
    await links.delete(from, LINKS);
  };

  const remember = async (links: BinStore, visitorId: string, key: string) => {
    const keys = ((await links.get(visitorId, LINKS)) as string[] | undefined) ?? [];
    if (!keys.includes(key)) await links.set(visitorId, LINKS, [...keys, key], env.linkTtlMs);
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
      if (state.owner.own !== undefined) {
        // A shared (fingerprint) visitor is not this user's: link the client's own ID.
        state.become(state.owner.own, 'cookie', 'high');
      }
      const me = state.owner.id;
      const key = linkKey(ctx, userId);
      if (await links.add(key, LINK, me, env.linkTtlMs)) {
        await remember(links, me, key);
        return 'linked';
      }
      const linked = (await links.get(key, LINK)) as string | undefined;
      if (linked === undefined || linked === me) {
        await links.set(key, LINK, me, env.linkTtlMs);
        await remember(links, me, key);
        return linked === me ? 'already' : 'linked';
      }
      if ((options.policy ?? env.linkPolicy) === 'keep') return 'kept';
      await copyAll(me, linked, true);
      await moveLinks(me, linked);
      await deleteAll(me);
      state.become(linked, 'link', 'high');
      sendCookie(linked);
      changed({ type: 'adopt', from: me, to: linked });
      return 'adopted';
    },

    async rotate() {
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
      const ids = state.owner.own === undefined ? [state.owner.id] : [state.owner.id, state.owner.own];
      for (const id of ids) {
        await moveLinks(id, undefined);
        await deleteAll(id);
      }
      state.become(state.owner.id, state.source, state.confidence);
      sendCookie(undefined);
      changed({ type: 'forget', from: state.owner.id, to: state.owner.id });
    },
  };
  return actions;
}
