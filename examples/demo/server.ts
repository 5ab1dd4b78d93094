// The visitor-state demo: who the visitor is, two remembered choices, and a toy login.
// Run: npm start    PORT (default 3000); DATA_DIR (default ./data) holds the SQLite file and the demo secret.
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseCookie } from 'cookie';
import express, { type ErrorRequestHandler, type Request } from 'express';
import { visitorState } from '../../src/adapters/express.js';
import { authResolver, ConfigError, cookieResolver, createVisitorState } from '../../src/index.js';
import { cityNamed, geoBin, isTheme, themeBin, type VisitorFacts } from './choices.js';
import { renderLogin, renderMessage, renderPage } from './page.js';
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
  parseCookie(req.headers.cookie ?? '')[DEMO_USER] || undefined;

const visitors = createVisitorState({
  secret: await demoSecret(dataDir),
  store,
  // The 250 ms default suits a store over the network; on a busy laptop or CI machine the first
  // writes to a new SQLite file (creating its WAL) have been seen to take longer.
  timeout: '2s',
  sweepInterval: '10m',
  // At login, a browser moves onto the visitor this user already has on another device.
  linkPolicy: 'adopt',
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
  if (form.city === undefined && form.theme === undefined) return refuse(req, res, 'Choose a city or a theme.');
  const geo = form.city === undefined ? undefined : cityNamed(form.city);
  if (form.city !== undefined && !geo) return refuse(req, res, 'That city is not on the list; pick one of the list.');
  if (form.theme !== undefined && !isTheme(form.theme)) return refuse(req, res, "The theme is 'light' or 'dark'.");
  if (geo) await visitor.cache.set(geoBin, geo);
  if (isTheme(form.theme)) await visitor.cache.set(themeBin, form.theme);
  res.redirect(303, '/');
});

app.get('/login', async (req, res) => {
  res.type('html').send(renderLogin(await factsOf(req)));
});

app.post('/login', async (req, res) => {
  const name = String((req.body as Record<string, unknown> | undefined)?.name ?? '').trim();
  if (!NAME.test(name)) return refuse(req, res, 'A name is 1 to 40 characters, with no control characters.');
  res.cookie(DEMO_USER, name, { httpOnly: true, sameSite: 'lax', path: '/' });
  // Right after a login: this user is this visitor, or, when another browser logged in as them
  // first, this browser moves onto that visitor (linkPolicy 'adopt'), choices and all.
  await req.visitor.link(name);
  res.redirect(303, '/');
});

app.post('/logout', (_req, res) => {
  res.clearCookie(DEMO_USER, { httpOnly: true, sameSite: 'lax', path: '/' });
  res.redirect(303, '/');
});

/** Answers a form the demo will not take with the page again and a line saying why (400). */
async function refuse(req: Request, res: express.Response, message: string): Promise<void> {
  res
    .status(400)
    .type('html')
    .send(renderPage(await factsOf(req), message));
}

/** The theme of a page that is not the main one: the visitor's, when it can be read without fuss. */
const themeOf = async (req: Request): Promise<string> => {
  const theme = await req.visitor?.cache.get(themeBin).catch(() => undefined);
  return theme ?? 'light';
};

app.use(async (req, res) => {
  res
    .status(404)
    .type('html')
    .send(renderMessage(await themeOf(req), 'Not found', 'There is no page at this address.'));
});

// Express's own error page shows the stack and the server's paths; this one says what happened only.
const onError: ErrorRequestHandler = (error: { status?: unknown; type?: unknown }, req, res, _next) => {
  const status = typeof error.status === 'number' && error.status >= 400 && error.status < 600 ? error.status : 500;
  if (status >= 500) console.error('visitor-state demo:', error);
  if (res.headersSent) return void res.end();
  const [title, text] =
    error.type === 'entity.too.large'
      ? ['Too large', 'That form sent more than the 2 kB the demo takes.']
      : status < 500
        ? ['Not understood', 'The demo could not read that request.']
        : ['Something went wrong', 'The demo could not answer this request; the server log says why.'];
  void themeOf(req).then((theme) =>
    res
      .status(status)
      .type('html')
      .send(renderMessage(theme, title, text)),
  );
};
app.use(onError);

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
