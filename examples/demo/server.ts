// The visitor-state demo: who the visitor is, two remembered choices, and a toy login.
// Run: npm start    PORT (default 3000); DATA_DIR (default ./data) holds the SQLite file and the demo secret.
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse as parseCookies } from 'cookie';
import express, { type Request } from 'express';
import { visitorState } from '../../src/adapters/express.js';
import { authResolver, ConfigError, cookieResolver, createVisitorState } from '../../src/index.js';
import { cityNamed, geoBin, isTheme, themeBin, type VisitorFacts } from './choices.js';
import { renderPage } from './page.js';
import { demoSecret } from './secret.js';

const dataDir = process.env.DATA_DIR ?? './data';
// The embedded default store: one SQLite file, created on first run. DATA_DIR moves it elsewhere.
const store =
  process.env.DATA_DIR === undefined
    ? 'sqlite://./data/visitor-state.sqlite'
    : `sqlite://${pathToFileURL(resolve(dataDir, 'visitor-state.sqlite')).pathname}`;

const DEMO_USER = 'demo_user';
const NAME = /^[^\p{Cc}]{1,40}$/u;

/** The toy login: whatever name the plain `demo_user` cookie holds. Unverified, so never do this for real. */
const demoUser = (req: IncomingMessage): string | undefined =>
  parseCookies(req.headers.cookie ?? '')[DEMO_USER] || undefined;

const visitors = createVisitorState({
  secret: await demoSecret(dataDir),
  store,
  // The 250 ms default suits a store over the network; on a busy laptop or CI machine the first
  // writes to a new SQLite file (creating its WAL) have been seen to take longer.
  timeout: '2s',
  sweepInterval: '10m',
  // The cookie comes first, so logging in or out never changes the visitor ID.
  resolvers: [cookieResolver(), authResolver({ identify: (req) => demoUser(req as IncomingMessage) })],
});
try {
  await visitors.ready();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(`visitor-state demo cannot start: ${error.message}`);
  process.exit(1);
}

async function factsOf(req: Request): Promise<VisitorFacts> {
  const visitor = await req.visitor.resolve();
  const [geo, theme] = await visitor.cache.getMany([geoBin, themeBin]);
  return {
    id: visitor.id,
    source: visitor.source,
    confidence: visitor.confidence,
    user: demoUser(req) ?? null,
    geo: geo ?? null,
    theme: theme ?? null,
  };
}

const app = express();
app.disable('x-powered-by');
app.use(express.urlencoded({ extended: false, limit: '2kb' }));
// req.visitor, resolved on first use: a route that never asks for it sets no cookie.
app.use(visitorState(visitors));

app.get('/', async (req, res) => {
  res.type('html').send(renderPage(await factsOf(req)));
});

app.get('/api/visitor', async (req, res) => {
  res.json(await factsOf(req));
});

app.post('/choices', async (req, res) => {
  const visitor = req.visitor;
  const form = (req.body ?? {}) as Record<string, unknown>;
  const geo = cityNamed(form.city);
  if (geo) await visitor.cache.set(geoBin, geo);
  if (isTheme(form.theme)) await visitor.cache.set(themeBin, form.theme);
  res.redirect(303, '/');
});

app.post('/login', async (req, res) => {
  const name = String((req.body as Record<string, unknown> | undefined)?.name ?? '').trim();
  if (NAME.test(name)) {
    res.cookie(DEMO_USER, name, { httpOnly: true, sameSite: 'lax', path: '/' });
    // Right after a login: this user is this visitor, so another browser logging in as them finds it.
    await req.visitor.link(name);
  }
  res.redirect(303, '/');
});

app.post('/logout', (_req, res) => {
  res.clearCookie(DEMO_USER, { httpOnly: true, sameSite: 'lax', path: '/' });
  res.redirect(303, '/');
});

const server = createServer(app);
server.once('error', (error) => {
  console.error(`visitor-state demo cannot listen: ${error.message}`);
  void visitors.close().finally(() => process.exit(1));
});
server.listen(Number(process.env.PORT ?? 3000), () => {
  const { port } = server.address() as AddressInfo;
  console.log(`visitor-state demo on http://localhost:${port}/  (data in ${dataDir}; Ctrl-C stops it)`);
});

const stop = (signal: NodeJS.Signals) => {
  console.log(`${signal}: stopping the visitor-state demo`);
  server.close(() => {
    visitors.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error('visitor-state demo: the store did not close cleanly', error);
        process.exit(1);
      },
    );
  });
  // Idle keep-alive connections of a browser would otherwise hold the server open.
  server.closeIdleConnections();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
