import type { Identity, Resolver, ResolverContext } from './types.js';

/** A user ID the application has verified itself, or nothing when the request is anonymous. */
export type VerifiedUser = string | number | null | undefined;

/** Options of {@link authResolver}. */
export interface AuthResolverOptions {
  /**
   * Returns the user ID that the application has already verified for this request: a
   * session's `req.user.id` after its own login, or a `REMOTE_USER` that a trusted front end
   * set. Never a raw `Authorization` header: anyone can write one.
   */
  identify(req: unknown, ctx: ResolverContext): VerifiedUser | Promise<VerifiedUser>;
  /**
   * The resolver's name, reported as `visitor.source`.
   * @default 'auth'
   */
  name?: string;
}

/**
 * Resolves a logged-in user to a visitor ID: the visitor that `visitor.link(userId)`
 * recorded for the user, else a keyed HMAC of the user ID, so the ID is stable for the user
 * on every device and reveals nothing of the user ID.
 *
 * Put it after `cookieResolver()` (the order of the default examples): when a request has
 * both a valid visitor cookie and a user, the cookie wins, so the visitor ID does not change
 * at login or at logout. On a device with no cookie yet, the user's ID is issued in the
 * cookie and stays after logout.
 *
 * @example
 * ```ts
 * createVisitorState({
 *   resolvers: [cookieResolver(), authResolver({ identify: (req) => (req as AppRequest).user?.id })],
 * });
 * ```
 */
export function authResolver(options: AuthResolverOptions): Resolver {
  return {
    name: options.name ?? 'auth',
    async resolve(ctx): Promise<Identity | undefined> {
      const user = await options.identify(ctx.req, ctx);
      if (user === undefined || user === null || user === '') return undefined;
      const linked = await ctx.linkedVisitor(user);
      return { id: linked ?? ctx.keys.mac('auth-id', String(user), 16), confidence: 'high' };
    },
  };
}
