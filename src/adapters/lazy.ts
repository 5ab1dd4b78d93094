import type { BinCache } from '../state/cache.js';
import type { Visitor } from '../visitor.js';

/**
 * The visitor of one request, resolved on first use: what the framework adapters put on the
 * request (`req.visitor`, `request.visitor`, `c.get('visitor')`).
 *
 * Resolving may mint an ID, set the visitor cookie and mark the response `Cache-Control: private`,
 * and resolvers may be async, so the adapters cannot resolve up front without costing every route
 * that never asks (a cacheable page would lose its cacheability). Instead `cache`, `link()`,
 * `rotate()` and `forget()` work directly and resolve the visitor on first use, and `resolve()`
 * gives the {@link Visitor} itself, with `id`, `source` and `confidence`: the same object on every
 * call within the request, and the same one `visitors.resolve(req, res)` returns for that request.
 *
 * @example
 * ```ts
 * app.get('/', async (req, res) => {
 *   await req.visitor.cache.set('mymod:geo', { city: 'Lyon' }); // resolves the visitor here
 *   const { id, source } = await req.visitor.resolve();
 *   res.json({ id, source });
 * });
 * ```
 */
export interface LazyVisitor extends Pick<Visitor, 'link' | 'rotate' | 'forget'> {
  /** The visitor of this request; the first call resolves it, later calls return the same object. */
  resolve(): Promise<Visitor>;
  /** The visitor's bins; the first call on them resolves the visitor. */
  readonly cache: BinCache;
  /** Whether the visitor has been asked for in this request: until then nothing was minted or sent. */
  readonly resolved: boolean;
}

/**
 * Wraps a resolution so that it runs once, on first use, and is let go when `whenDone` says the
 * response is over. Shared by every adapter.
 *
 * @example
 * ```ts
 * const visitor = lazyVisitor(() => visitors.resolve(req, res));
 * await visitor.cache.get('mymod:geo');
 * ```
 */
export function lazyVisitor(
  resolveOnce: () => Promise<Visitor>,
  whenDone?: (release: () => void) => void,
): LazyVisitor {
  let pending: Promise<Visitor> | undefined;
  const resolve = (): Promise<Visitor> => {
    if (!pending) {
      pending = resolveOnce();
      // The framework may keep the request after the response (a keep-alive socket holds its last
      // one): let go of the visitor then, so it dies young instead of moving to V8's old generation.
      whenDone?.(() => {
        pending = undefined;
      });
    }
    return pending;
  };
  const cache: BinCache = {
    get: async (bin) => (await resolve()).cache.get(bin),
    set: async (bin, data, options) => (await resolve()).cache.set(bin, data, options),
    delete: async (bin) => (await resolve()).cache.delete(bin),
    getMany: async (bins) => (await resolve()).cache.getMany(bins),
  };
  return {
    resolve,
    cache,
    link: async (userId, options) => (await resolve()).link(userId, options),
    rotate: async () => (await resolve()).rotate(),
    forget: async () => (await resolve()).forget(),
    get resolved() {
      return pending !== undefined;
    },
  };
}
