import type { NodeLikeRequest, NodeLikeResponse } from '../http.js';
import type { Visitor } from '../visitor.js';
import type { VisitorState } from '../visitor-state.js';
import { type LazyVisitor, lazyVisitor } from './lazy.js';

export type { Visitor } from '../visitor.js';
export type { VisitorState } from '../visitor-state.js';
export type { LazyVisitor } from './lazy.js';

/**
 * Resolves the visitor of a node:http request (or of anything built on node:http).
 * Resolved once per request: a second call for the same request returns the same visitor.
 */
export type ResolveNodeVisitor = (req: NodeLikeRequest, res: NodeLikeResponse) => Promise<Visitor>;

/**
 * The visitor resolver for plain node:http: call it when a route needs the visitor, and only
 * then, so a route that never calls it mints nothing and stays cacheable.
 *
 * @example
 * ```ts
 * import { visitorState } from 'visitor-state/node';
 * const visitorOf = visitorState(visitors);
 * http.createServer(async (req, res) => {
 *   const visitor = await visitorOf(req, res);
 *   res.end(String(await visitor.cache.get('mymod:geo')));
 * });
 * ```
 */
export function visitorState(visitors: VisitorState): ResolveNodeVisitor {
  return (req, res) => visitors.resolve(req, res);
}

/**
 * A {@link LazyVisitor} over a node:http request: nothing is resolved until its `cache` or
 * `resolve()` is used. For frameworks on node:http that have no adapter of their own.
 *
 * @example
 * ```ts
 * const visitor = lazyNodeVisitor(visitors, req, res);
 * if (wantsGeo) await visitor.cache.get('mymod:geo');
 * ```
 */
export function lazyNodeVisitor(visitors: VisitorState, req: NodeLikeRequest, res: NodeLikeResponse): LazyVisitor {
  return lazyVisitor(
    () => visitors.resolve(req, res),
    (release) => res.once?.('close', release),
  );
}
