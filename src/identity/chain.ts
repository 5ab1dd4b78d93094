import { ConfigError, type ErrorHook, ResolverError } from '../errors.js';
import { type CookieReading, type CookieResolver, isCookieResolver } from './cookie.js';
import type { Confidence, Identity, Resolver, ResolverContext } from './types.js';

/** Who the visitor is for this request, and what the response must tell the client. */
export interface Resolution {
  readonly id: string;
  /** The resolver that knew the visitor, or `'new'`. */
  readonly source: string;
  readonly confidence: Confidence;
  /** The ID to send in the visitor cookie with this response; `undefined` when nothing changed. */
  readonly issue: string | undefined;
  /**
   * The client's own cookie ID when `id` is one that many clients share (a fingerprint):
   * what this request stores goes under it too, so a client that keeps cookies keeps what
   * its first request stored.
   */
  readonly own: string | undefined;
  /**
   * A shared ID (a fingerprint) that this request's writes also go to while `id` is the
   * client's own: a first visit behind a fingerprint that holds no state yet. A client that
   * keeps no cookies finds what it stored there on its next request.
   */
  readonly shared: string | undefined;
  /** A cap on the lifetime of what is stored under the shared ID (`shared`, else `id`). */
  readonly maxTtl: number | undefined;
  /** Whether the client cannot know `id` yet: only this response's cookie can take it there. */
  readonly fresh: boolean;
}

/** Where {@link Chain.use} puts a resolver. */
export interface Placement {
  before?: string;
  after?: string;
}

export interface Chain {
  /** Synchronous while every resolver it asks answers synchronously, as the cookie resolver does. */
  resolve(ctx: ResolverContext): Resolution | Promise<Resolution>;
  use(resolver: Resolver, placement?: Placement): void;
  readonly cookie: CookieResolver | undefined;
}

// Custom resolvers may answer with the application's own short IDs ('dev-p1'). A bounded
// character class anchored at both ends: linear, no backtracking.
const ID = /^[A-Za-z0-9_-]{1,128}$/;
const UNREAD = Symbol('unread');
const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  typeof (value as PromiseLike<unknown> | undefined)?.then === 'function';
const CONFIDENCE = new Set<unknown>(['high', 'medium', 'low']);

/**
 * The ordered resolver chain: the first resolver that knows the visitor wins; with none,
 * a new random ID is minted. The chain, not the resolvers, decides what goes into the
 * visitor cookie, so no resolver can hand a shared ID to a client for good.
 */
export function createChain(
  initial: readonly Resolver[],
  onError: ErrorHook,
  randomId: () => string,
  holdsState?: (sharedId: string) => boolean | Promise<boolean>,
): Chain {
  const resolvers = [...initial];
  const names = new Set<string>();
  for (const resolver of resolvers) addName(resolver);

  function addName(resolver: Resolver): void {
    if (typeof resolver?.name !== 'string' || typeof resolver.resolve !== 'function') {
      throw new ConfigError('a resolver is an object { name, resolve(ctx) }');
    }
    if (resolver.name === 'new' || names.has(resolver.name)) {
      throw new ConfigError(`resolver name '${resolver.name}' is taken; give each resolver its own name`);
    }
    names.add(resolver.name);
  }

  let cookie = resolvers.find(isCookieResolver);

  const check = (resolver: Resolver, identity: unknown): Identity | undefined => {
    if (identity === undefined) return undefined;
    const { id, confidence } = (identity ?? {}) as Partial<Identity>;
    if (typeof id === 'string' && ID.test(id) && CONFIDENCE.has(confidence)) return identity as Identity;
    onError(
      new ResolverError(
        resolver.name,
        `resolver '${resolver.name}' returned something that is not { id, confidence }: ids are 1 to 128 characters of A-Z a-z 0-9 _ -, confidence 'high', 'medium' or 'low'`,
      ),
    );
    return undefined;
  };

  /** The cookie's reading, made at most once per resolution. */
  type Reading = CookieReading | undefined | typeof UNREAD;
  const readOnce = (ctx: ResolverContext, reading: Reading) => (reading === UNREAD ? cookie?.read(ctx) : reading);

  const fromCookie = (hit: CookieReading, source: string): Resolution => ({
    id: hit.id,
    source,
    confidence: 'high',
    issue: hit.reissue ? hit.id : undefined,
    own: undefined,
    shared: undefined,
    maxTtl: undefined,
    fresh: false,
  });

  const minted = (id: string, shared: string | undefined, maxTtl: number | undefined): Resolution => ({
    id,
    source: 'new',
    confidence: 'medium',
    issue: id,
    own: undefined,
    shared,
    maxTtl,
    fresh: true,
  });

  const fromIdentity = (
    identity: Identity,
    source: string,
    current: CookieReading | undefined,
  ): Resolution | Promise<Resolution> => {
    const { id, confidence, maxTtl } = identity;
    if (identity.persist ?? confidence !== 'low') {
      const unchanged = current?.id === id && !current.reissue;
      const issue = unchanged ? undefined : id;
      return { id, source, confidence, issue, own: undefined, shared: undefined, maxTtl, fresh: current?.id !== id };
    }
    // A shared ID is never written into the cookie: the client gets (or keeps) one of its own.
    const lend = (own: string): Resolution => ({
      id,
      source,
      confidence,
      issue: current && !current.reissue ? undefined : own,
      own,
      shared: undefined,
      maxTtl,
      fresh: false,
    });
    if (current || !holdsState) return lend(current?.id ?? randomId());
    // A first visit: the shared ID is lent only when it holds state, else the request reports
    // the ID its new cookie carries, so a client that keeps cookies has one ID from the first
    // request on. What it stores goes under the shared ID too, for a client that keeps none.
    const own = randomId();
    const held = holdsState(id);
    if (typeof held === 'boolean') return held ? lend(own) : minted(own, id, maxTtl);
    return held.then(
      (yes) => (yes ? lend(own) : minted(own, id, maxTtl)),
      () => minted(own, id, maxTtl),
    );
  };

  // Walks the chain from `start` without a promise for as long as the resolvers answer
  // synchronously: a returning visitor's cookie is read, verified and decided in one go.
  const resolveFrom = (start: number, ctx: ResolverContext, reading: Reading): Resolution | Promise<Resolution> => {
    for (let i = start; i < resolvers.length; i++) {
      const resolver = resolvers[i] as Resolver;
      if (resolver === cookie) {
        reading = readOnce(ctx, reading);
        if (reading) return fromCookie(reading, resolver.name);
        continue;
      }
      let answer: ReturnType<Resolver['resolve']>;
      try {
        answer = resolver.resolve(ctx);
      } catch (error) {
        skip(resolver, error);
        continue;
      }
      if (isThenable(answer)) return settle(answer, i, ctx, reading);
      const identity = check(resolver, answer);
      if (identity) return fromIdentity(identity, resolver.name, readOnce(ctx, reading));
    }
    return minted(randomId(), undefined, undefined);
  };

  const settle = async (answer: PromiseLike<unknown>, at: number, ctx: ResolverContext, reading: Reading) => {
    const resolver = resolvers[at] as Resolver;
    let identity: Identity | undefined;
    try {
      identity = check(resolver, await answer);
    } catch (error) {
      skip(resolver, error);
    }
    if (identity) return fromIdentity(identity, resolver.name, readOnce(ctx, reading));
    return resolveFrom(at + 1, ctx, reading);
  };

  const skip = (resolver: Resolver, error: unknown) =>
    onError(new ResolverError(resolver.name, `resolver '${resolver.name}' threw; skipped it`, { cause: error }));

  return {
    get cookie() {
      return cookie;
    },

    use(resolver, placement = {}) {
      addName(resolver);
      const anchor = placement.before ?? placement.after;
      let index = resolvers.length;
      if (anchor !== undefined) {
        const at = resolvers.findIndex((r) => r.name === anchor);
        if (at < 0) {
          names.delete(resolver.name);
          throw new ConfigError(`no resolver named '${anchor}' to place '${resolver.name}' next to`);
        }
        index = placement.before !== undefined ? at : at + 1;
      }
      resolvers.splice(index, 0, resolver);
      cookie = resolvers.find(isCookieResolver);
    },

    resolve: (ctx) => resolveFrom(0, ctx, UNREAD),
  };
}
