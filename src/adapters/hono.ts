import type { Context, MiddlewareHandler } from 'hono';
import type { VisitorState } from '../visitor-state.js';
import { fetchRequestView, fetchScope } from './fetch-scope.js';
import type { LazyVisitor } from './lazy.js';

export type { Visitor } from '../visitor.js';
export type { VisitorState } from '../visitor-state.js';
export type { LazyVisitor } from './lazy.js';

declare module 'hono' {
  interface ContextVariableMap {
    /** The visitor of this request, resolved on first use; set by the `visitorState()` middleware. */
    visitor: LazyVisitor;
  }
}

/** Options of {@link visitorState}. */
export interface HonoVisitorStateOptions {
  /**
   * The address of the TCP peer, which a Fetch `Request` does not carry. On another runtime,
   * pass its connection-info helper, e.g. `(c) => getConnInfo(c).remote.address` from `hono/bun`
   * or `hono/deno`.
   * @default on `@hono/node-server`, the socket's remote address (what its `getConnInfo` reads); elsewhere undefined
   */
  peerAddress?: (c: Context) => string | undefined;
}

interface NodeServerBindings {
  readonly incoming?: { readonly socket?: { readonly remoteAddress?: string | undefined } | undefined } | undefined;
}

// Read the bindings the way @hono/node-server's getConnInfo does, without depending on that package.
const nodeServerPeer = (c: Context): string | undefined => {
  const env = c.env as (NodeServerBindings & { readonly server?: NodeServerBindings }) | undefined;
  return (env?.server ?? env)?.incoming?.socket?.remoteAddress;
};

/**
 * Hono middleware that puts the visitor in the context as `c.get('visitor')` (or `c.var.visitor`),
 * a {@link LazyVisitor}, and after the handler adds the visitor's headers to `c.res`. A route
 * that never uses the visitor mints nothing, sets no cookie and adds no `Cache-Control`.
 * Custom resolvers get the Hono `Context` as `ctx.req`, e.g. `identify: (c) => c.get('jwtPayload')?.sub`.
 *
 * @example
 * ```ts
 * import { visitorState } from 'visitor-state/hono';
 * app.use(visitorState(visitors));
 * app.get('/', async (c) => {
 *   await c.get('visitor').cache.set('mymod:geo', { city: 'Lyon' });
 *   return c.json({ id: (await c.get('visitor').resolve()).id });
 * });
 * ```
 */
export function visitorState(visitors: VisitorState, options: HonoVisitorStateOptions = {}): MiddlewareHandler {
  const peerAddress = options.peerAddress ?? nodeServerPeer;
  return async (c, next) => {
    const view = fetchRequestView(c.req.raw, () => peerAddress(c), c);
    const scope = fetchScope(visitors, view, c.req.raw);
    c.set('visitor', scope.visitor);
    await next();
    try {
      scope.applyTo(c.res.headers);
    } catch (error) {
      // A Response from fetch() has immutable headers. Replace it first and then write in place:
      // Hono's `c.res` setter merges the old response's Set-Cookie over the new one's.
      if (!(error instanceof TypeError)) throw error;
      c.res = new Response(c.res.body, c.res);
      scope.applyTo(c.res.headers);
    }
  };
}
