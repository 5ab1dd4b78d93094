// A Cloudflare Worker as a user writes it: the visit counter of the quick start, over the memory
// store (state lives as long as the isolate) and over Workers KV through unstorage, through the
// Fetch entry, and through the Hono entry over the memory store.
import { Hono } from 'hono';
import { createStorage } from 'unstorage';
import cloudflareKVBinding from 'unstorage/drivers/cloudflare-kv-binding';
import { createVisitorState } from 'visitor-state';
import { visitorState } from 'visitor-state/fetch';
import { visitorState as honoVisitorState } from 'visitor-state/hono';

const count = async (_request, visitor) => {
  const visits = ((await visitor.cache.get('demo:visits')) ?? 0) + 1;
  await visitor.cache.set('demo:visits', visits);
  return Response.json({ visits, id: (await visitor.resolve()).id });
};

// Bindings arrive with the first request, so the stores are made then, once per isolate.
let routes;
const routesFor = (env) => {
  routes ??= {
    '/memory': visitorState(createVisitorState({ secret: env.VISITOR_STATE_SECRET }))(count),
    '/kv': visitorState(
      createVisitorState({
        secret: env.VISITOR_STATE_SECRET,
        store: createStorage({ driver: cloudflareKVBinding({ binding: env.VISITOR_STATE }) }),
      }),
    )(count),
    '/hono': new Hono()
      .use(honoVisitorState(createVisitorState({ secret: env.VISITOR_STATE_SECRET })))
      .get('/hono', async (c) => {
        const visits = ((await c.var.visitor.cache.get('demo:visits')) ?? 0) + 1;
        await c.var.visitor.cache.set('demo:visits', visits);
        return c.json({ visits, id: (await c.var.visitor.resolve()).id });
      }).fetch,
    // A store whose driver the bundle does not hold: refused with a ConfigError that says why.
    '/redis': async () => {
      const visitors = createVisitorState({ secret: env.VISITOR_STATE_SECRET, store: 'redis://127.0.0.1:6379' });
      const error = await visitors.ready().catch((failure) => failure);
      return Response.json({ name: error?.name, code: error?.code, message: error?.message });
    },
  };
  return routes;
};

export default {
  fetch(request, env) {
    const route = routesFor(env)[new URL(request.url).pathname];
    return route ? route(request, env) : new Response('not found', { status: 404 });
  },
};
