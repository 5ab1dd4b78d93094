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
  resolve(ctx: ResolverContext): Promise<Resolution>;
  use(resolver: Resolver, placement?: Placement): void;
  readonly cookie: CookieResolver | undefined;
}

const ID = /^[A-Za-z0-9_-]{8,128}$/;
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

    async resolve(ctx) {
      let reading: CookieReading | undefined | null = null;
      const readCookie = () => {
        if (reading === null) reading = cookie?.read(ctx);
        return reading;
      };

      for (const resolver of resolvers) {
        if (resolver === cookie) {
          const hit = readCookie();
          if (hit)
            return {
              id: hit.id,
              source: resolver.name,
              confidence: 'high',
              issue: hit.reissue ? hit.id : undefined,
              own: undefined,
              maxTtl: undefined,
            };
          continue;
        }
        let identity: Identity | undefined;
        try {
          identity = check(resolver, await resolver.resolve(ctx));
        } catch (error) {
          onError(new ResolverError(resolver.name, `resolver '${resolver.name}' threw; skipped it`, { cause: error }));
          continue;
        }
        if (!identity) continue;
        const current = readCookie();
        const base = {
          id: identity.id,
          source: resolver.name,
          confidence: identity.confidence,
          maxTtl: identity.maxTtl,
        };
        if (identity.persist ?? identity.confidence !== 'low') {
          const unchanged = current?.id === identity.id && !current.reissue;
          return { ...base, issue: unchanged ? undefined : identity.id, own: undefined };
        }
        // A shared ID is never written into the cookie: the client gets (or keeps) one of its own.
        const own = current?.id ?? randomId();
        return { ...base, issue: current && !current.reissue ? undefined : own, own };
      }

      const id = randomId();
      return { id, source: 'new', confidence: 'medium', issue: id, own: undefined, maxTtl: undefined };
    },
  };
}
