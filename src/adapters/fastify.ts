import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { fastifyPlugin } from 'fastify-plugin';
import { type NodeLikeResponse, nodeRequestView, nodeResponseView, type RequestView } from '../http.js';
import type { VisitorState } from '../visitor-state.js';
import { type LazyVisitor, lazyVisitor } from './lazy.js';

export type { Visitor } from '../visitor.js';
export type { VisitorState } from '../visitor-state.js';
export type { LazyVisitor } from './lazy.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The visitor of this request, resolved on first use; set by the `visitorState()` plugin. */
    visitor: LazyVisitor;
  }
}

/** The request as the core sees it; custom resolvers get Fastify's request as `ctx.req` (with its decorations, such as `request.user`). */
function requestView(request: FastifyRequest): RequestView {
  return nodeRequestView(request.raw, request);
}

/**
 * The reply as the core's response: headers go through `reply.header()`, since Fastify writes
 * its own header list at `writeHead` and would override what was set on `reply.raw`. A hijacked
 * reply is written by the handler on `reply.raw`, so its headers go there.
 */
function replyResponse(reply: FastifyReply): NodeLikeResponse {
  return {
    get headersSent() {
      return reply.raw.headersSent;
    },
    getHeader(name) {
      return reply.sent ? reply.raw.getHeader(name) : reply.getHeader(name);
    },
    setHeader(name, value) {
      if (reply.sent) {
        reply.raw.setHeader(name, value);
        return;
      }
      // reply.header() appends to an existing Set-Cookie list; the view passes the whole list.
      reply.removeHeader(name);
      reply.header(name, typeof value === 'string' || typeof value === 'number' ? value : [...value]);
    },
  };
}

/**
 * A Fastify plugin (wrapped with `fastify-plugin`, so it applies to the whole app) that puts
 * the visitor on `request.visitor`, a {@link LazyVisitor}: a route that never uses it mints
 * nothing, sets no cookie and adds no `Cache-Control`, so a shared cache may keep its response.
 * Custom resolvers get Fastify's request as `ctx.req`.
 *
 * @example
 * ```ts
 * import { visitorState } from 'visitor-state/fastify';
 * await app.register(visitorState(visitors));
 * app.get('/', async (request) => {
 *   await request.visitor.cache.set('mymod:geo', { city: 'Lyon' });
 *   return { id: (await request.visitor.resolve()).id };
 * });
 * ```
 */
export function visitorState(visitors: VisitorState): FastifyPluginAsync {
  const plugin: FastifyPluginAsync = async (fastify) => {
    fastify.decorateRequest('visitor', null as unknown as LazyVisitor);
    fastify.addHook('onRequest', (request, reply, done) => {
      const whenDone = (release: () => void) => reply.raw.once('close', release);
      // Keyed by reply.raw, the key `visitors.resolve(request.raw, reply.raw)` uses: however a
      // route asks, one request has one visitor.
      request.visitor = lazyVisitor(
        () => visitors.resolveView(requestView(request), nodeResponseView(replyResponse(reply)), reply.raw, whenDone),
        whenDone,
      );
      done();
    });
  };
  return fastifyPlugin(plugin, { fastify: '4.x || 5.x', name: 'visitor-state' });
}
