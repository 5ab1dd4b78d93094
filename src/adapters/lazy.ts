import type { BinCache, BinRef, ManyData, SetOptions } from '../state/cache.js';
import type { LinkOutcome, LinkPolicy, Visitor } from '../visitor.js';

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
  return new DeferredVisitor(resolveOnce, whenDone);
}

// Classes rather than object literals: every request gets one, used or not, so its methods
// belong on a prototype instead of being closures made per request.
class DeferredVisitor implements LazyVisitor {
  readonly #resolveOnce: () => Promise<Visitor>;
  readonly #whenDone: ((release: () => void) => void) | undefined;
  #pending: Promise<Visitor> | undefined;
  #cache: BinCache | undefined;

  constructor(resolveOnce: () => Promise<Visitor>, whenDone: ((release: () => void) => void) | undefined) {
    this.#resolveOnce = resolveOnce;
    this.#whenDone = whenDone;
  }

  resolve(): Promise<Visitor> {
    if (!this.#pending) {
      this.#pending = this.#resolveOnce();
      // The framework may keep the request after the response (a keep-alive socket holds its last
      // one): let go of the visitor then, so it dies young instead of moving to V8's old generation.
      this.#whenDone?.(() => {
        this.#pending = undefined;
      });
    }
    return this.#pending;
  }

  get resolved(): boolean {
    return this.#pending !== undefined;
  }

  get cache(): BinCache {
    if (!this.#cache) this.#cache = new DeferredCache(this);
    return this.#cache;
  }

  async link(userId: string | number, options?: { policy?: LinkPolicy }): Promise<LinkOutcome> {
    return (await this.resolve()).link(userId, options);
  }

  async rotate(): Promise<void> {
    return (await this.resolve()).rotate();
  }

  async forget(): Promise<void> {
    return (await this.resolve()).forget();
  }
}

class DeferredCache implements BinCache {
  readonly #visitor: DeferredVisitor;

  constructor(visitor: DeferredVisitor) {
    this.#visitor = visitor;
  }

  async get<T>(bin: BinRef<T>): Promise<T | undefined> {
    return (await this.#visitor.resolve()).cache.get(bin);
  }

  async set<T>(bin: BinRef<T>, data: NoInfer<T>, options?: SetOptions): Promise<boolean> {
    return (await this.#visitor.resolve()).cache.set(bin, data, options);
  }

  async delete(bin: BinRef): Promise<boolean> {
    return (await this.#visitor.resolve()).cache.delete(bin);
  }

  async update<T>(
    bin: BinRef<T>,
    fn: (current: T | undefined) => NoInfer<T> | undefined,
    options?: SetOptions,
  ): Promise<T | undefined> {
    return (await this.#visitor.resolve()).cache.update(bin, fn, options);
  }

  async getMany<const B extends readonly BinRef[]>(bins: B): Promise<ManyData<B>> {
    return (await this.#visitor.resolve()).cache.getMany(bins);
  }
}
