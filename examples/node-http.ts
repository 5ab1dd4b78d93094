// A plain node:http server: the visitor's ID and one remembered choice.
// Run: npm start   (PORT=3000 by default; the secret comes from VISITOR_STATE_SECRET)
import { createServer } from 'node:http';
import { createVisitorState } from '../src/index.js';

const visitors = createVisitorState({ store: process.env.VISITOR_STATE_STORE ?? 'memory:' });
await visitors.ready();

const server = createServer(async (req, res) => {
  const visitor = await visitors.resolve(req, res);
  const url = new URL(req.url ?? '/', 'http://localhost');
  const color = url.searchParams.get('color');
  if (color) await visitor.cache.set('example:color', color.slice(0, 20));
  const chosen = (await visitor.cache.get<string>('example:color')) ?? 'none yet';
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end(`<!doctype html><title>visitor-state</title>
<p>Visitor <code>${visitor.id.slice(0, 8)}…</code> (from ${visitor.source}, confidence ${visitor.confidence})</p>
<p>Your colour: <b>${escapeHtml(chosen)}</b></p>
<p><a href="/?color=teal">teal</a> · <a href="/?color=orange">orange</a> · <a href="/">reload</a></p>`);
});

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const port = Number(process.env.PORT ?? 3000);
server.listen(port, () => console.log(`visitor-state example on http://localhost:${port}/`));

const stop = () => {
  server.close();
  server.closeAllConnections();
  void visitors.close().then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
