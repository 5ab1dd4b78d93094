import type { KeyRing } from '../crypto.js';

/** How sure a resolver is that the ID belongs to this one client. */
export type Confidence = 'high' | 'medium' | 'low';

/** What a resolver returns when it knows the visitor. */
export interface Identity {
  /** The visitor ID: 1 to 128 URL-safe characters (`A-Z a-z 0-9 _ -`), such as an application's own `'dev-p1'`. */
  id: string;
  confidence: Confidence;
  /**
   * Whether this ID may be written into the visitor cookie. An ID that many clients share
   * (a fingerprint) must not be, or everyone behind it who keeps cookies would be merged.
   * @default true, unless `confidence` is `'low'`
   */
  persist?: boolean;
  /**
   * Caps, in milliseconds, the lifetime of what is stored under this ID; for IDs that only
   * stand for a group of clients, such as a fingerprint.
   * @default no cap beyond the bin's own TTL
   */
  maxTtl?: number;
}

/** What a resolver sees of the request. Everything is computed on first use. */
export interface ResolverContext {
  /** A request header by lower-case name. */
  header(name: string): string | undefined;
  /** The request's cookies, parsed once. */
  readonly cookies: Readonly<Record<string, string | undefined>>;
  /** The client's address as believed through trusted proxies, normalised; `undefined` when unknown or malformed. */
  readonly clientIp: string | undefined;
  /** Whether the client reached us over HTTPS (directly or per a trusted proxy). */
  readonly secure: boolean;
  /** The framework's own request object. */
  readonly req: unknown;
  /** Keyed hashing under the application's secret, for resolvers that derive IDs. */
  readonly keys: KeyRing;
  /** The clock, injectable for tests. */
  now(): number;
  /** The visitor ID that `visitor.link(userId)` recorded for a verified user, if any. */
  linkedVisitor(userId: string | number): Promise<string | undefined>;
}

/**
 * One link of the resolver chain: returns the visitor's identity, or `undefined` to let
 * the next resolver try. Untrusted input that does not check out is "absent", not an error.
 *
 * @example
 * ```ts
 * const deviceHeader: Resolver = {
 *   name: 'device',
 *   resolve: (ctx) => {
 *     const id = ctx.header('x-device-id');
 *     return id ? { id: ctx.keys.mac('device', id, 16), confidence: 'high' } : undefined;
 *   },
 * };
 * ```
 */
export interface Resolver {
  readonly name: string;
  resolve(ctx: ResolverContext): Identity | undefined | Promise<Identity | undefined>;
}
