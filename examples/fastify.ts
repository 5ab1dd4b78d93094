// Fastify with visitor-state: the plugin puts `request.visitor` on every request, resolved only on use.
// Run: PORT=3000 npx tsx examples/fastify.ts   (the secret comes from VISITOR_STATE_SECRET)
import Fastify from 'fastify';
import { visitorState } from '../src/adapters/fastify.js';
import { createVisitorState } from '../src/index.js';

const visitors = createVisitorState({ store: process.env.VISITOR_STATE_STORE ?? 'memory:' });
await visitors.ready();

const app = Fastify();
await app.register(visitorState(visitors));

// Uses the visitor: answers with Cache-Control: private and, on a first visit, the visitor cookie.
app.get<{ Querystring: { color?: string } }>('/', async (request) => {
  const color = request.query.color?.slice(0, 20);
  if (color) await request.visitor.cache.set('example:color', color);
  const { id, source, confidence } = await request.visitor.resolve();
  const chosen = (await request.visitor.cache.get<string>('example:color')) ?? null;
  return { visitor: `${id.slice(0, 8)}…`, source, confidence, color: chosen };
});

// Never asks for the visitor: no cookie, no Cache-Control added, so a shared cache may keep it.
app.get('/about', async (_request, reply) => {
  reply.header('cache-control', 'public, max-age=300');
  return 'visitor-state with Fastify\n';
});

const port = Number(process.env.PORT ?? 3000);
await app.listen({ port });
console.log(`visitor-state example on http://localhost:${port}/`);

const stop = () => {
  void app
    .close()
    .then(() => visitors.close())
    .then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
