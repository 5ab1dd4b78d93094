/**
 * Every error visitor-state throws or reports is a `VisitorStateError` with a stable
 * `code`; the original failure, when there is one, is kept as `cause`.
 *
 * @example
 * ```ts
 * try {
 *   await visitor.cache.set('mymod:geo', geo);
 * } catch (error) {
 *   if (error instanceof StorageError) log.warn('visitor state not saved', error.cause);
 *   else throw error;
 * }
 * ```
 */
export class VisitorStateError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Options that cannot work, found at construction: the message says how to fix them. */
export class ConfigError extends VisitorStateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VISITOR_STATE_CONFIG', message, options);
  }
}

/** A store that is down, slow past the timeout, or broken. The request can go on. */
export class StorageError extends VisitorStateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VISITOR_STATE_STORAGE', message, options);
  }
}

/** A bin name or a value the bin cache refuses: empty or long name, unserialisable or large data. */
export class BinError extends VisitorStateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VISITOR_STATE_BIN', message, options);
  }
}

/** A resolver that threw or returned something that is not an identity. */
export class ResolverError extends VisitorStateError {
  readonly resolver: string;

  constructor(resolver: string, message: string, options?: { cause?: unknown }) {
    super('ERR_VISITOR_STATE_RESOLVER', message, options);
    this.resolver = resolver;
  }
}

/** State written after the response headers were sent, or a cookie budget exceeded. */
export class CookieError extends VisitorStateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VISITOR_STATE_COOKIE', message, options);
  }
}

/** Receives every failure visitor-state recovers from; the one place where they are reported. */
export type ErrorHook = (error: VisitorStateError) => void;
