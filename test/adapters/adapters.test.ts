import { createServer, type Server } from 'node:http';
import { type Http2Bindings, type HttpBindings, serve as serveHono } from '@hono/node-server';
import express from 'express';
import express4 from 'express4';
import Fastify from 'fastify';
import { type Context, Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { visitorState as expressVisitorState } from '../../src/adapters/express.js';
import { visitorState as fastifyVisitorState } from '../../src/adapters/fastify.js';
import { visitorState as fetchVisitorState, lazyFetchVisitor, resolveVisitor } from '../../src/adapters/fetch.js';
import { visitorState as honoVisitorState } from '../../src/adapters/hono.js';
import { lazyNodeVisitor, visitorState as nodeVisitorState } from '../../src/adapters/node-http.js';
import { CookieError, createVisitorState, type Visitor, type VisitorStateError } from '../../src/index.js';
import { createCookieJar } from '../helpers/cookie-jar.js';
import { listening, send, serve } from '../helpers/http.js';
import { type AdapterApp, adapterSuite, route, SECRET } from './adapter-suite.js';

type NodeServerEnv = HttpBindings | Http2Bindings;

const honoServer = (fetch: (request: Request, env: NodeServerEnv) => Response | Promise<Response>) =>
  listening(serveHono({ fetch, port: 0, hostname: '127.0.0.1' }) as Server);

adapterSuite('node:http', (visitors) =>
  serve(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const body = await route({
      path: url.pathname,
      query: url.searchParams,
      visitor: lazyNodeVisitor(visitors, req, res),
      header: (name, value) => (name === 'set-cookie' ? res.appendHeader(name, value) : res.setHeader(name, value)),
    });
    res.statusCode = body ? 200 : 404;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body ?? {}));
  }),
);

// Express 4 is installed beside 5 under the alias express4; one middleware serves both.
for (const [name, makeApp] of [
  ['Express 5', express],
  ['Express 4', express4],
] as const) {
  adapterSuite(name, (visitors) => {
    const app = makeApp();
    app.use(expressVisitorState(visitors));
    app.use(async (req, res) => {
      const body = await route({
        path: req.path,
        query: new URLSearchParams(req.url.slice(req.path.length)),
        visitor: req.visitor,
        header: (name, value) => res.append(name, value),
      });
      res.status(body ? 200 : 404).json(body ?? {});
    });
    return listening(createServer(app).listen(0, '127.0.0.1'));
  });
}

adapterSuite('Fastify', async (visitors) => {
  const app = Fastify();
  await app.register(fastifyVisitorState(visitors));
  app.all('/*', async (request, reply) => {
    const url = new URL(request.url, 'http://localhost');
    const body = await route({
      path: url.pathname,
      query: url.searchParams,
      visitor: request.visitor,
      header: (name, value) => reply.header(name, value),
    });
    return reply.code(body ? 200 : 404).send(body ?? {});
  });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url: address, close: () => app.close() };
});

adapterSuite('Hono', (visitors) => {
  const app = new Hono();
  app.use(honoVisitorState(visitors));
  app.all('*', async (c) => {
    const url = new URL(c.req.url);
    const body = await route({
      path: url.pathname,
      query: url.searchParams,
      visitor: c.get('visitor'),
      header: (name, value) => c.header(name, value, { append: name === 'set-cookie' }),
    });
    return c.json(body ?? {}, body ? 200 : 404);
  });
  return honoServer(app.fetch);
});

adapterSuite('Fetch', (visitors) => {
  const withVisitor = fetchVisitorState<[NodeServerEnv]>(visitors, {
    clientAddress: (_request, env) => env.incoming.socket.remoteAddress,
  });
  return honoServer(
    withVisitor(async (request, visitor) => {
      const url = new URL(request.url);
      const headers = new Headers({ 'content-type': 'application/json' });
      const body = await route({
        path: url.pathname,
        query: url.searchParams,
        visitor,
        header: (name, value) => headers.append(name, value),
      });
      return new Response(JSON.stringify(body ?? {}), { status: body ? 200 : 404, headers });
    }),
  );
});

const opened: AdapterApp[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((app) => app.close()));
});

const quietVisitors = () => {
  const errors: VisitorStateError[] = [];
  return { errors, visitors: createVisitorState({ secret: SECRET, onError: (e) => errors.push(e) }) };
};

describe('the node:http entry', () => {
  it('resolves a request once: the same Visitor however it is asked for', async () => {
    const { visitors } = quietVisitors();
    const visitorOf = nodeVisitorState(visitors);
    let same: boolean[] = [];
    const app = await serve(async (req, res) => {
      const lazy = lazyNodeVisitor(visitors, req, res);
      const before = lazy.resolved;
      const a = await visitorOf(req, res);
      const b = await lazy.resolve();
      const c = await visitors.resolve(req, res);
      same = [before === false, a === b, b === c, lazy.resolved];
      res.end();
    });
    opened.push(app);
    const reply = await send(app.url);
    expect(same).toEqual([true, true, true, true]);
    expect(reply.setCookies).toHaveLength(1);
  });
});

describe('the Express entry', () => {
  it('puts on req.visitor the Visitor that visitors.resolve(req, res) gives', async () => {
    const { visitors } = quietVisitors();
    const app = express();
    app.use(expressVisitorState(visitors));
    let seen: { untouched: boolean; same: boolean } | undefined;
    app.get('/', async (req, res) => {
      const untouched = !req.visitor.resolved;
      const direct: Visitor = await visitors.resolve(req, res);
      seen = { untouched, same: direct === (await req.visitor.resolve()) };
      res.send('ok');
    });
    opened.push(await listening(createServer(app).listen(0, '127.0.0.1')));
    await send(opened[0]?.url as string);
    expect(seen).toEqual({ untouched: true, same: true });
  });
  it('links a login through req.visitor without resolving by hand', async () => {
    const { visitors } = quietVisitors();
    const app = express();
    app.use(expressVisitorState(visitors));
    app.post('/login', async (req, res) => {
      res.json({ outcome: await req.visitor.link('user-42'), resolved: req.visitor.resolved });
    });
    opened.push(await listening(createServer(app).listen(0, '127.0.0.1')));
    const reply = await send(`${opened[0]?.url}/login`, { method: 'POST' });
    expect(reply.json()).toEqual({ outcome: 'linked', resolved: true });
    expect(reply.setCookies).toHaveLength(1);
  });
});

describe('the Fastify entry', () => {
  it('sends the visitor cookie on a hijacked reply written through reply.raw', async () => {
    const { visitors } = quietVisitors();
    const app = Fastify();
    await app.register(fastifyVisitorState(visitors));
    app.get('/raw', async (request, reply) => {
      reply.hijack();
      await request.visitor.cache.get('suite:color');
      reply.raw.writeHead(200, { 'content-type': 'text/plain' });
      reply.raw.end('raw');
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    opened.push({ url, close: () => app.close() });
    const reply = await send(`${url}/raw`);
    expect(reply.body).toBe('raw');
    expect(reply.headers['cache-control']).toBe('private');
    expect(reply.setCookies.some((line) => line.startsWith(`${visitors.cookieName}=`))).toBe(true);
  });
  it('gives one visitor to request.visitor.resolve() and visitors.resolve(request.raw, reply.raw), in either order', async () => {
    const { visitors } = quietVisitors();
    const app = Fastify();
    await app.register(fastifyVisitorState(visitors));
    app.get('/lazy-first', async (request, reply) => {
      const lazy = await request.visitor.resolve();
      const direct = await visitors.resolve(request.raw, reply.raw);
      return { same: lazy === direct, id: lazy.id };
    });
    app.get('/direct-first', async (request, reply) => {
      const direct = await visitors.resolve(request.raw, reply.raw);
      await request.visitor.cache.set('suite:color', 'teal');
      const lazy = await request.visitor.resolve();
      return { same: lazy === direct, id: direct.id };
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    opened.push({ url, close: () => app.close() });
    const jar = createCookieJar();
    const first = (await jar.request(`${url}/lazy-first`)).json<{ same: boolean; id: string }>();
    expect(first.same).toBe(true);
    const fresh = createCookieJar();
    const second = await fresh.request(`${url}/direct-first`);
    expect(second.json()).toMatchObject({ same: true });
    expect(second.setCookies.filter((line) => line.startsWith(`${visitors.cookieName}=`))).toHaveLength(1);
    expect(fresh.get(visitors.cookieName as string)?.startsWith(`${second.json<{ id: string }>().id}.`)).toBe(true);
  });

  it("gives custom resolvers Fastify's request, with its decorations", async () => {
    const { visitors } = quietVisitors();
    visitors.use(
      {
        name: 'fastify-user',
        resolve: (ctx) => ({ id: `user-${(ctx.req as { user: string }).user}`, confidence: 'high' }),
      },
      { before: 'cookie' },
    );
    const app = Fastify();
    await app.register(fastifyVisitorState(visitors));
    app.decorateRequest('user', '');
    app.addHook('preHandler', async (request) => {
      (request as unknown as { user: string }).user = 'ada00001';
    });
    app.get('/', async (request) => (await request.visitor.resolve()).id);
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    opened.push({ url, close: () => app.close() });
    expect((await send(url)).body).toBe('user-ada00001');
  });
});

describe('the Fetch entry', () => {
  it('resolveVisitor resolves now and apply() puts the cookie on the response', async () => {
    const { visitors } = quietVisitors();
    const { visitor, apply } = await resolveVisitor(visitors, new Request('http://example.test/'));
    expect(visitor.source).toBe('new');
    const response = new Response('hello', { headers: { 'set-cookie': 'theme=dark' } });
    expect(apply(response)).toBe(response);
    const cookies = response.headers.getSetCookie();
    expect(cookies[0]).toBe('theme=dark');
    expect(cookies[1]).toMatch(new RegExp(`^${visitors.cookieName}=`));
    expect(cookies[1]).not.toMatch(/Secure/);
    expect(response.headers.get('cache-control')).toBe('private');
  });

  it('marks the visitor cookie Secure for an https: request', async () => {
    const { visitors } = quietVisitors();
    const { apply } = await resolveVisitor(visitors, new Request('https://example.test/'));
    expect(apply(new Response('x')).headers.getSetCookie()[0]).toMatch(/; Secure/);
  });

  it('applies the headers to a copy of a response whose headers are immutable', async () => {
    const { visitors } = quietVisitors();
    const { apply } = await resolveVisitor(visitors, new Request('http://example.test/'));
    const redirect = Response.redirect('http://example.test/next', 303);
    const sent = apply(redirect);
    expect(sent).not.toBe(redirect);
    expect(sent.status).toBe(303);
    expect(sent.headers.get('location')).toBe('http://example.test/next');
    expect(sent.headers.getSetCookie()).toHaveLength(1);
  });

  it('returns the response untouched when the visitor was never used', () => {
    const { visitors } = quietVisitors();
    const { visitor, apply } = lazyFetchVisitor(visitors, new Request('http://example.test/'));
    const response = new Response('cacheable', { headers: { 'cache-control': 'public, max-age=60' } });
    expect(apply(response)).toBe(response);
    expect([...response.headers.keys()]).toEqual(['cache-control']);
    expect(visitor.resolved).toBe(false);
  });

  it('reports a visitor first used after its response was built, instead of losing its cookie silently', async () => {
    const { visitors, errors } = quietVisitors();
    const { visitor, apply } = lazyFetchVisitor(visitors, new Request('http://example.test/'));
    const response = apply(new Response('early'));
    await visitor.resolve();
    expect(response.headers.getSetCookie()).toEqual([]);
    expect(errors.some((error) => error instanceof CookieError)).toBe(true);
  });
});

describe('the Hono entry', () => {
  it('gives custom resolvers the Hono context', async () => {
    const { visitors } = quietVisitors();
    visitors.use(
      {
        name: 'hono-user',
        resolve: (ctx) => ({ id: `user-${(ctx.req as Context).req.header('x-user')}`, confidence: 'high' }),
      },
      { before: 'cookie' },
    );
    const app = new Hono().use(honoVisitorState(visitors));
    app.get('/', async (c) => c.text((await c.var.visitor.resolve()).id));
    opened.push(await honoServer(app.fetch));
    expect((await send(`${opened[0]?.url}/`, { headers: { 'x-user': 'ada00001' } })).body).toBe('user-ada00001');
  });

  it('puts the visitor cookie on a redirect, whose headers are immutable', async () => {
    const { visitors } = quietVisitors();
    const app = new Hono();
    app.use(honoVisitorState(visitors));
    app.get('/go', async (c) => {
      await c.get('visitor').cache.set('suite:color', 'teal');
      return Response.redirect('http://127.0.0.1/next', 302);
    });
    opened.push(await honoServer(app.fetch));
    const jar = createCookieJar();
    const reply = await jar.request(`${opened[0]?.url}/go`);
    expect(reply.status).toBe(302);
    expect(reply.headers.location).toBe('http://127.0.0.1/next');
    expect(reply.headers['cache-control']).toBe('private');
    expect(jar.get(visitors.cookieName as string)).toBeDefined();
  });
});
