import type { Visitor } from '../visitor.js';
import type { VisitorState } from '../visitor-state.js';
import { fetchRequestView, fetchScope } from './fetch-scope.js';
import type { LazyVisitor } from './lazy.js';

export type { Visitor } from '../visitor.js';
export type { VisitorState } from '../visitor-state.js';
export type { LazyVisitor } from './lazy.js';

/** Options of {@link lazyFetchVisitor} and {@link resolveVisitor}. */
export interface FetchVisitorOptions {
  /**
   * The address of the TCP peer, which a Fetch `Request` does not carry: Bun's
   * `server.requestIP(request)?.address`, Deno's `info.remoteAddr.hostname`. Needed by the
   * fingerprint resolver and by `trustProxy`.
   * @default undefined: unknown
   */
  clientAddress?: string | undefined;
  /**
   * What custom resolvers see as `ctx.req`.
   * @default the Request
   */
  raw?: unknown;
}

/** The visitor of a Fetch request, and how to put its headers on the response. */
export interface FetchVisitor<V extends Visitor | LazyVisitor> {
  readonly visitor: V;
  /**
   * Adds the headers that resolving and writing state produced (Set-Cookie lines,
   * `Cache-Control: private` unless the response has a Cache-Control, `Vary: Cookie`) to the
   * response, or to a copy when its headers are immutable; returns the response to send.
   * Call it once, on the response you return. A response whose request never used the
   * visitor is returned untouched.
   */
  apply(response: Response): Response;
}

/**
 * The visitor of a Fetch-API request (Bun, Deno, Cloudflare Workers, any router on `Request`
 * and `Response`), resolved on first use of `visitor`.
 *
 * @example
 * ```ts
 * const { visitor, apply } = lazyFetchVisitor(visitors, request);
 * const geo = new URL(request.url).pathname === '/geo' ? await visitor.cache.get('mymod:geo') : undefined;
 * return apply(Response.json({ geo }));
 * ```
 */
export function lazyFetchVisitor(
  visitors: VisitorState,
  request: Request,
  options: FetchVisitorOptions = {},
): FetchVisitor<LazyVisitor> {
  const view = fetchRequestView(request, () => options.clientAddress, options.raw ?? request);
  const scope = fetchScope(visitors, view, request);
  return { visitor: scope.visitor, apply: scope.apply };
}

/**
 * Resolves the visitor of a Fetch-API request now.
 *
 * @example
 * ```ts
 * Bun.serve({
 *   async fetch(request, server) {
 *     const { visitor, apply } = await resolveVisitor(visitors, request, {
 *       clientAddress: server.requestIP(request)?.address,
 *     });
 *     return apply(new Response(`Hello ${visitor.id}`));
 *   },
 * });
 * ```
 */
export async function resolveVisitor(
  visitors: VisitorState,
  request: Request,
  options: FetchVisitorOptions = {},
): Promise<FetchVisitor<Visitor>> {
  const { visitor, apply } = lazyFetchVisitor(visitors, request, options);
  return { visitor: await visitor.resolve(), apply };
}

/** A Fetch handler that receives the visitor; `A` are the runtime's extra arguments (Deno's `info`, Bun's `server`). */
export type VisitorFetchHandler<A extends unknown[]> = (
  request: Request,
  visitor: LazyVisitor,
  ...args: A
) => Response | Promise<Response>;

/** Options of {@link visitorState}. */
export interface FetchVisitorStateOptions<A extends unknown[]> {
  /**
   * The address of the TCP peer, from the runtime's extra arguments, e.g. Deno's
   * `(request, info) => info.remoteAddr.hostname` or Bun's `(request, server) => server.requestIP(request)?.address`.
   * @default () => undefined: unknown
   */
  clientAddress?: (request: Request, ...args: A) => string | undefined;
}

/**
 * Wraps a Fetch handler so that it receives the visitor, a {@link LazyVisitor}, and its
 * response carries the visitor's headers. A request that never uses the visitor mints nothing
 * and gets its response untouched.
 *
 * @example
 * ```ts
 * import { visitorState } from 'visitor-state/fetch';
 * const withVisitor = visitorState<[Deno.ServeHandlerInfo]>(visitors, {
 *   clientAddress: (request, info) => info.remoteAddr.hostname,
 * });
 * Deno.serve(withVisitor(async (request, visitor) => Response.json({ id: (await visitor.resolve()).id })));
 * ```
 */
export function visitorState<A extends unknown[] = []>(
  visitors: VisitorState,
  options: FetchVisitorStateOptions<A> = {},
): (handler: VisitorFetchHandler<A>) => (request: Request, ...args: A) => Promise<Response> {
  const clientAddress = options.clientAddress;
  return (handler) =>
    async (request, ...args) => {
      const view = fetchRequestView(request, () => clientAddress?.(request, ...args), request);
      const scope = fetchScope(visitors, view, request);
      return scope.apply(await handler(request, scope.visitor, ...args));
    };
}
