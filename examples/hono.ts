// Hono on Node.js with visitor-state: `c.get('visitor')` on every request, resolved only on use.
// Run: PORT=3000 npx tsx examples/hono.ts   (the secret comes from VISITOR_STATE_SECRET)
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { visitorState } from '../src/adapters/hono.js';
import { createVisitorState } from '../src/index.js';

const visitors = createVisitorState({ store: process.env.VISITOR_STATE_STORE ?? 'memory:' });
await visitors.ready();

const app = new Hono();
app.use(visitorState(visitors));

// Uses the visitor: answers with Cache-Control: private and, on a first visit, the visitor cookie.
app.get('/', async (c) => {
  const visitor = c.get('visitor');
  const color = c.req.query('color')?.slice(0, 20);
  if (color) await visitor.cache.set('example:color', color);
  const { id, source, confidence } = await visitor.resolve();
  const chosen = (await visitor.cache.get<string>('example:color')) ?? null;
  return c.json({ visitor: `${id.slice(0, 8)}…`, source, confidence, color: chosen });
});

// Never asks for the visitor: no cookie, no Cache-Control added, so a shared cache may keep it.
app.get('/about', (c) => {
  c.header('cache-control', 'public, max-age=300');
  return c.text('visitor-state with Hono\n');
});

const port = Number(process.env.PORT ?? 3000);
const server = serve({ fetch: app.fetch, port }, () =>
  console.log(`visitor-state example on http://localhost:${port}/`),
);

const stop = () => {
  server.close();
  void visitors.close().then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
