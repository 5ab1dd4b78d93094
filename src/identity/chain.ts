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
  /** A cap on the lifetime of what is stored under `id`. */
  readonly maxTtl: number | undefined;
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

const ID = /^[A-Za-z0-9_-]{8,128}$/;
const UNREAD = Symbol('unread');
const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  typeof (value as PromiseLike<unknown> | undefined)?.then === 'function';
const CONFIDENCE = new Set<unknown>(['high', 'medium', 'low']);

/**
 * The ordered resolver chain: the first resolver that knows the visitor wins; with none,
 * a new random ID is minted. The chain, not the resolvers, decides what goes into the
 * visitor cookie, so no resolver can hand a shared ID to a client for good.
 */
export function createChain(initial: readonly Resolver[], onError: ErrorHook, randomId: () => string): Chain {
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
        `resolver '${resolver.name}' returned something that is not { id, confidence }: ids are 8 to 128 characters of A-Z a-z 0-9 _ -`,
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
    maxTtl: undefined,
  });

  const fromIdentity = (identity: Identity, source: string, current: CookieReading | undefined): Resolution => {
    const { id, confidence, maxTtl } = identity;
    if (identity.persist ?? confidence !== 'low') {
      const unchanged = current?.id === id && !current.reissue;
      return { id, source, confidence, issue: unchanged ? undefined : id, own: undefined, maxTtl };
    }
    // A shared ID is never written into the cookie: the client gets (or keeps) one of its own.
    const own = current?.id ?? randomId();
    return { id, source, confidence, issue: current && !current.reissue ? undefined : own, own, maxTtl };
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
    const id = randomId();
    return { id, source: 'new', confidence: 'medium', issue: id, own: undefined, maxTtl: undefined };
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
