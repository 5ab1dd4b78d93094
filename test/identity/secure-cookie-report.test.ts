import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CookieError, type VisitorStateError } from '../../src/errors.js';
import { cookieResolver } from '../../src/identity/cookie.js';
import { createVisitorState, type VisitorState } from '../../src/visitor-state.js';
import { createStrictCookieJar } from '../helpers/cookie-jar.js';

const reports: VisitorStateError[] = [];
let visitors: VisitorState;
let server: Server;
let base: string;

beforeAll(async () => {
  visitors = createVisitorState({
    secret: 'a-secret-for-the-secure-cookie-report-test-0123',
    resolvers: [cookieResolver({ hostPrefix: true })],
    onError: (error) => reports.push(error),
  });
  server = createServer(async (req, res) => {
    const visitor = await visitors.resolve(req, res);
    res.end(visitor.id);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('server has no port');
  base = `http://127.0.0.1:${address.port}`;
});

afterAll(async () => {
  await visitors.close();
  await new Promise((resolve) => server.close(resolve));
});

it('reports once through onError that a __Host- cookie went out over plain http to a public host name', async () => {
  // localhost is a secure context: the browser keeps the cookie there, and nothing is reported.
  const local = await createStrictCookieJar(base, `http://localhost:${new URL(base).port}`);
  const first = await local.request('/');
  const second = await local.request('/');
  expect(second.body).toBe(first.body);
  expect(local.refused).toEqual([]);
  expect(reports).toEqual([]);

  // A public host name over plain http: a strict jar drops the cookie, so each request is a new visitor.
  const shop = await createStrictCookieJar(base, 'http://shop.example');
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push((await shop.request('/')).body);
  expect(new Set(ids).size).toBe(3);
  expect(shop.refused).toHaveLength(3);
  expect(shop.lastSetCookies[0]).toMatch(/^__Host-vsid=.*; Secure/);

  expect(reports).toHaveLength(1);
  expect(reports[0]).toBeInstanceOf(CookieError);
  expect(reports[0]?.message).toBe(
    'the visitor cookie __Host-vsid went out over plain http to a host other than localhost, and hostPrefix makes it Secure, so browsers drop it and every request is a new visitor: ' +
      'serve the site over HTTPS (behind a TLS proxy, name it in trustProxy so its X-Forwarded-Proto counts), or drop hostPrefix. Reported once per process',
  );
});
