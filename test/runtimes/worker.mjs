// A Cloudflare Worker as a user writes it: the visit counter of the quick start, once over the
// memory store (state lives as long as the isolate) and once over Workers KV through unstorage.
import { createStorage } from 'unstorage';
import cloudflareKVBinding from 'unstorage/drivers/cloudflare-kv-binding';
import { createVisitorState } from 'visitor-state';
import { visitorState } from 'visitor-state/fetch';

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
  };
  return routes;
};

export default {
  fetch(request, env) {
    const route = routesFor(env)[new URL(request.url).pathname];
    return route ? route(request) : new Response('not found', { status: 404 });
  },
};
