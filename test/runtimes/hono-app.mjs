// The Hono quick start of the README, served by Bun or Deno on 127.0.0.1:$PORT, with the peer
// address from Hono's getConnInfo of that runtime.
import { Hono } from 'hono';
import { createVisitorState } from 'visitor-state';
import { visitorState } from 'visitor-state/hono';

const { getConnInfo } = await (globalThis.Bun ? import('hono/bun') : import('hono/deno'));
const visitors = createVisitorState({ trustProxy: ['loopback'] });
const app = new Hono().use(visitorState(visitors, { peerAddress: (c) => getConnInfo(c).remote.address }));
app.get('/', async (c) => {
  const visits = ((await c.var.visitor.cache.get('demo:visits')) ?? 0) + 1;
  await c.var.visitor.cache.set('demo:visits', visits);
  const { id, source } = await c.var.visitor.resolve();
  return c.json({ visits, id, source, runtime: globalThis.Bun ? 'bun' : 'deno' });
});
app.get('/about', (c) => c.text('no visitor here\n'));

const port = Number(process.env.PORT);
if (globalThis.Bun) globalThis.Bun.serve({ fetch: app.fetch, port, hostname: '127.0.0.1' });
else globalThis.Deno.serve({ port, hostname: '127.0.0.1', onListen: () => {} }, app.fetch);
console.log(`listening on ${port}`);
