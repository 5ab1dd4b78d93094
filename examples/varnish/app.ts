// Behind Varnish: public pages are cached for everyone; per-visitor state comes from /state,
// which the page fetches, or from an ESI fragment under /state/. See README.md beside this file.
// Run: PORT=3000 npx tsx examples/varnish/app.ts   (then varnishd with default.vcl in front)
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { parse as parseCookies } from 'cookie';
import { createVisitorState, type Visitor } from '../../src/index.js';

const visitors = createVisitorState({
  // The fallback is for this example only: a real secret comes from the environment.
  secret: process.env.VISITOR_STATE_SECRET ?? 'varnish-example-secret-not-for-production-use',
  // Varnish on this host is the only proxy, and its VCL overwrites X-Forwarded-For with the client's address.
  trustProxy: 'loopback',
  // Small UI choices live in sealed cookies (vs_data.0, vs_data.1, ...), which the VCL lets through to /state.
  bins: { 'ui:*': { store: 'cookie:' } },
});
await visitors.ready();

interface Geo {
  city: string;
}

const PUBLIC = 'public, max-age=60';
const THEMES = new Set(['light', 'dark']);

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const page = (title: string, body: string) => `<!doctype html>
<meta charset="utf-8"><title>${escapeHtml(title)}</title>
<h1>${escapeHtml(title)}</h1>
<p>Rendered at ${new Date().toISOString()}: the same bytes for every visitor, cached by Varnish.</p>
${body}`;

// The page is public; the visitor's own state arrives by a request of its own, which Varnish passes.
const home = () =>
  page(
    'Home',
    `<p>Your city: <b id="city">…</b></p>
<form id="f"><input name="city" placeholder="Lyon"> <button>Remember</button></form>
<p><a href="/articles/1">An article</a></p>
<script>
const show = (s) => { document.getElementById('city').textContent = s.geo ? s.geo.city : 'none yet'; };
fetch('/state').then((r) => r.json()).then(show);
document.getElementById('f').onsubmit = (e) => {
  e.preventDefault();
  fetch('/state', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ city: new FormData(e.target).get('city') }) }).then((r) => r.json()).then(show);
};
</script>`,
  );

// The article is cached with the ESI tag in it; Varnish fills the tag per request from /state/fragment.
const article = (n: string) =>
  page(`Article ${n}`, `<p>Some text everyone reads.</p>\n<p><esi:include src="/state/fragment"/></p>`);

function sendPublic(res: ServerResponse, status: number, html: string, esi = false): void {
  res.statusCode = status;
  res.setHeader('cache-control', PUBLIC);
  if (esi) res.setHeader('surrogate-control', 'content="ESI/1.0"');
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end(html);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of req as AsyncIterable<Buffer>) {
    size += part.length;
    if (size > 1024) return {};
    parts.push(part);
  }
  try {
    const value: unknown = JSON.parse(Buffer.concat(parts).toString('utf8') || '{}');
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  } catch (error) {
    if (error instanceof SyntaxError) return {};
    throw error;
  }
}

async function remember(visitor: Visitor, input: { city?: unknown; theme?: unknown }): Promise<void> {
  if (typeof input.city === 'string' && input.city.trim() !== '') {
    await visitor.cache.set<Geo>('demo:geo', { city: input.city.trim().slice(0, 64) });
  }
  if (typeof input.theme === 'string' && THEMES.has(input.theme)) await visitor.cache.set('ui:theme', input.theme);
}

async function state(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const visitor = await visitors.resolve(req, res);
  if (req.method === 'POST') await remember(visitor, await readJson(req));
  else await remember(visitor, { city: url.searchParams.get('set'), theme: url.searchParams.get('theme') });
  const [geo, theme] = await visitor.cache.getMany(['demo:geo', 'ui:theme']);
  res.setHeader('content-type', 'application/json');
  res.end(
    JSON.stringify({
      geo: geo ?? null,
      theme: theme ?? null,
      // The visitor's own address, as the app believes it through the trusted proxy.
      clientIp: visitor.clientIp ?? null,
      // Which cookies reached the app (names only): the VCL keeps just the visitor-state ones.
      cookies: Object.keys(parseCookies(req.headers.cookie ?? '')),
    }),
  );
}

// An ESI fragment's own headers never reach the browser, so it cannot set a cookie: without one,
// resolving here would mint a new visitor on every view. It reads state only for a known visitor.
async function fragment(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const name = visitors.cookieName;
  const known = name !== undefined && parseCookies(req.headers.cookie ?? '')[name] !== undefined;
  const geo = known ? await (await visitors.resolve(req, res)).cache.get<Geo>('demo:geo') : undefined;
  if (!known) res.setHeader('cache-control', 'private');
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end(`<span class="city">Your city: ${geo ? escapeHtml(geo.city) : 'none yet'}</span>`);
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const route = async () => {
    if (url.pathname === '/') return sendPublic(res, 200, home());
    const match = /^\/articles\/(\d{1,6})$/.exec(url.pathname);
    if (match?.[1] !== undefined) return sendPublic(res, 200, article(match[1]), true);
    if (url.pathname === '/state') return state(req, res, url);
    if (url.pathname === '/state/fragment') return fragment(req, res);
    return sendPublic(res, 404, page('Not found', ''));
  };
  route().catch((error: unknown) => {
    console.error(error);
    if (!res.headersSent) res.writeHead(500, { 'cache-control': 'no-store' });
    res.end();
  });
});

const port = Number(process.env.PORT ?? 3000);
server.listen(port, '127.0.0.1', () => {
  console.log(`visitor-state behind Varnish: app listening on http://127.0.0.1:${port}/`);
  // The VCL's cookie.keep_re pattern on /state.
  console.log(`the cache must let through the cookies matching ${visitors.cacheCookies.pattern} on /state`);
});

const stop = () => {
  server.close();
  server.closeAllConnections();
  void visitors.close().then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
