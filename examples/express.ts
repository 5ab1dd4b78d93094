// Express with visitor-state: `req.visitor` on every request, resolved only by routes that use it.
// Run: PORT=3000 npx tsx examples/express.ts   (the secret comes from VISITOR_STATE_SECRET)
import express from 'express';
import { visitorState } from '../src/adapters/express.js';
import { createVisitorState } from '../src/index.js';

const visitors = createVisitorState({ store: process.env.VISITOR_STATE_STORE ?? 'memory:' });
await visitors.ready();

const app = express();
app.use(visitorState(visitors));

// Uses the visitor: answers with Cache-Control: private and, on a first visit, the visitor cookie.
app.get('/', async (req, res) => {
  const color = typeof req.query.color === 'string' ? req.query.color.slice(0, 20) : undefined;
  if (color) await req.visitor.cache.set('example:color', color);
  const { id, source, confidence } = await req.visitor.resolve();
  const chosen = (await req.visitor.cache.get<string>('example:color')) ?? null;
  res.json({ visitor: `${id.slice(0, 8)}…`, source, confidence, color: chosen });
});

// Never asks for the visitor: no cookie, no Cache-Control added, so a shared cache may keep it.
app.get('/about', (_req, res) => {
  res.set('cache-control', 'public, max-age=300').send('visitor-state with Express\n');
});

const port = Number(process.env.PORT ?? 3000);
const server = app.listen(port, () => console.log(`visitor-state example on http://localhost:${port}/`));

const stop = () => {
  server.close();
  server.closeAllConnections();
  void visitors.close().then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
