import { BinError } from '../errors.js';
import type { Identity, Resolver, ResolverContext } from './types.js';

/** A user ID the application has verified itself, or nothing when the request is anonymous. */
export type VerifiedUser = string | number | null | undefined;

const kindOf = (value: unknown): string =>
  value === null
    ? 'null'
    : Array.isArray(value)
      ? 'an array'
      : typeof value === 'number'
        ? String(value)
        : typeof value;

/**
 * A user ID as the library keys it: a non-empty string as it is, a finite number in its
 * decimal form (`String(n)`), so `1` and `'1'` are one user. Anything else (an object, an
 * array, `NaN`, a boolean, a bigint, `''`) is a {@link BinError}: turning it into a string
 * would make `{ id: 1 }` and `{ id: 2 }` one user. The message names the type, never the value.
 *
 * @example
 * ```ts
 * userIdOf(42); // '42'
 * userIdOf({ id: 42 }); // throws BinError
 * ```
 */
export function userIdOf(userId: unknown): string {
  if (typeof userId === 'string' && userId !== '') return userId;
  if (typeof userId === 'number' && Number.isFinite(userId)) return String(userId);
  throw new BinError(
    `a user ID must be a non-empty string or a finite number; got ${userId === '' ? 'an empty string' : kindOf(userId)}`,
  );
}

/** Options of {@link authResolver}. */
export interface AuthResolverOptions {
  /**
   * Returns the user ID that the application has already verified for this request: a
   * session's `req.user.id` after its own login, or a `REMOTE_USER` that a trusted front end
   * set. Never a raw `Authorization` header: anyone can write one. A string or a finite
   * number (`1` and `'1'` are one user); anything else is reported through `onError` and
   * the request goes on to the next resolver.
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
      const given = await options.identify(ctx.req, ctx);
      if (given === undefined || given === null) return undefined;
      // Throws a BinError for an object, NaN, ''...: the chain reports it and skips this resolver.
      const user = userIdOf(given);
      const linked = await ctx.linkedVisitor(user);
      return { id: linked ?? ctx.keys.mac('auth-id', user, 16), confidence: 'high' };
    },
  };
}
