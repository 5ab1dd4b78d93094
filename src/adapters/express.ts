import type { RequestHandler } from 'express';
import type { VisitorState } from '../visitor-state.js';
import { type LazyVisitor, lazyVisitor } from './lazy.js';

export type { Visitor } from '../visitor.js';
export type { VisitorState } from '../visitor-state.js';
export type { LazyVisitor } from './lazy.js';

declare global {
  // Express merges this global interface into its `Request`, in both Express 4 and 5 typings.
  namespace Express {
    interface Request {
      /** The visitor of this request, resolved on first use; set by `visitorState()`. */
      visitor: LazyVisitor;
    }
  }
}

/**
 * Express middleware (Express 4 and 5) that puts the visitor on `req.visitor`, a
 * {@link LazyVisitor}: a route that never uses it mints nothing, sets no cookie and adds no
 * `Cache-Control`, so a shared cache may keep its response.
 *
 * @example
 * ```ts
 * import { visitorState } from 'visitor-state/express';
 * app.use(visitorState(visitors));
 * app.get('/', async (req, res) => {
 *   await req.visitor.cache.set('mymod:geo', { city: 'Lyon' });
 *   res.json({ id: (await req.visitor.resolve()).id });
 * });
 * ```
 */
export function visitorState(visitors: VisitorState): RequestHandler {
  return (req, res, next) => {
    req.visitor = lazyVisitor(
      () => visitors.resolve(req, res),
      (release) => res.once('close', release),
    );
    next();
  };
}
