// The Fetch quick start of the README, served by Bun or Deno on 127.0.0.1:$PORT.
// STORE=unstorage keeps the bins in an unstorage instance (memory driver) instead of 'memory:',
// STORE=deno-kv in Deno KV through unstorage (Deno, with --unstable-kv).
import { createStorage } from 'unstorage';
import { createVisitorState } from 'visitor-state';
import { visitorState } from 'visitor-state/fetch';

const stores = {
  memory: async () => 'memory:',
  unstorage: async () => createStorage(),
  'deno-kv': async () => {
    const { default: denoKV } = await import('unstorage/drivers/deno-kv');
    return createStorage({ driver: denoKV({ path: ':memory:' }) });
  },
};
const store = await stores[process.env.STORE ?? 'memory']();
const withVisitor = visitorState(createVisitorState({ store }), {
  // Bun passes its server, Deno the connection info.
  clientAddress: (request, extra) => (globalThis.Bun ? extra.requestIP(request)?.address : extra.remoteAddr.hostname),
});
const fetch = withVisitor(async (_request, visitor) => {
  const visits = ((await visitor.cache.get('demo:visits')) ?? 0) + 1;
  await visitor.cache.set('demo:visits', visits);
  const { id, source } = await visitor.resolve();
  return Response.json({ visits, id, source, runtime: globalThis.Bun ? 'bun' : 'deno' });
});

const port = Number(process.env.PORT);
if (globalThis.Bun) globalThis.Bun.serve({ fetch, port, hostname: '127.0.0.1' });
else globalThis.Deno.serve({ port, hostname: '127.0.0.1', onListen: () => {} }, fetch);
console.log(`listening on ${port}`);
