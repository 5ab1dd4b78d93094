import { afterEach, describe, expect, it } from 'vitest';
import type { LazyVisitor } from '../../src/adapters/lazy.js';
import {
  createVisitorState,
  type Resolver,
  type Storage,
  StorageError,
  type VisitorState,
  type VisitorStateError,
  type VisitorStateOptions,
} from '../../src/index.js';
import { createCookieJar } from '../helpers/cookie-jar.js';

export const SECRET = 'adapter-suite-secret-long-enough-0001';

/** A running test app of one framework. */
export interface AdapterApp {
  readonly url: string;
  close(): Promise<void>;
}

/** One request as the framework-neutral routes see it. */
export interface RouteRequest {
  readonly path: string;
  readonly query: URLSearchParams;
  readonly visitor: LazyVisitor;
  /** Adds a response header of the handler's own choosing (Set-Cookie lines are appended). */
  header(name: string, value: string): void;
}

/** Writes that a request left for after its response, by token: run when `/late-run` asks. */
const lateWrites = new Map<string, () => Promise<string>>();

/**
 * The routes every adapter's test app serves, as JSON; `undefined` means 404.
 * - `/late-set?token=&bin=&value=` answers at once and leaves a write to its visitor for later;
 *   `/late-run?token=` runs that write, after the first response is out, and tells how it went
 * - `/plain` never touches the visitor
 * - `/id` resolves it; `/get?bin=` reads a bin; `/set?bin=&value=` writes one
 * - `/own-cache` chooses its own Cache-Control, then reads state
 * - `/own-cookie` sets a cookie of its own before and one after reading state
 */
export async function route({ path, query, visitor, header }: RouteRequest): Promise<object | undefined> {
  const bin = query.get('bin') ?? 'suite:color';
  switch (path) {
    case '/plain':
      return { plain: true };
    case '/late-set': {
      const value = query.get('value');
      lateWrites.set(query.get('token') ?? '', () =>
        visitor.cache.set(bin, value).then(
          () => 'stored',
          (error: Error) => `${error.name}: ${error.message}`,
        ),
      );
      return { later: true };
    }
    case '/late-run':
      return { outcome: await lateWrites.get(query.get('token') ?? '')?.() };
    case '/id': {
      const { id, source, confidence } = await visitor.resolve();
      return { id, source, confidence };
    }
    case '/get':
      return { value: await visitor.cache.get(bin), id: (await visitor.resolve()).id };
    case '/set':
      await visitor.cache.set(bin, query.get('value'));
      return { id: (await visitor.resolve()).id };
    case '/own-cache':
      header('cache-control', 'public, max-age=60');
      return { value: await visitor.cache.get(bin) };
    case '/own-cookie': {
      header('set-cookie', 'theme=dark; Path=/');
      const value = await visitor.cache.get(bin);
      header('set-cookie', 'lang=fr; Path=/');
      return { value };
    }
    default:
      return undefined;
  }
}

const failingStorage = (): Storage => {
  const down = () => Promise.reject(new Error('connection refused'));
  return { get: down, set: down, delete: down };
};

/**
 * The behaviour every framework adapter must show over real HTTP. `start` serves {@link route}
 * through the framework with the given visitors, on a free loopback port.
 */
export function adapterSuite(name: string, start: (visitors: VisitorState) => Promise<AdapterApp>): void {
  describe(`the ${name} adapter`, () => {
    const running: Array<{ app: AdapterApp; visitors: VisitorState }> = [];
    afterEach(async () => {
      await Promise.all(
        running.splice(0).map(async ({ app, visitors }) => Promise.all([app.close(), visitors.close()])),
      );
    });

    const app = async (options: VisitorStateOptions = {}) => {
      const errors: VisitorStateError[] = [];
      const addresses: Array<string | undefined> = [];
      const peer: Resolver = {
        name: 'peer-witness',
        resolve: (ctx) => {
          addresses.push(ctx.clientIp);
          return undefined;
        },
      };
      const visitors = createVisitorState({ secret: SECRET, onError: (e) => errors.push(e), ...options });
      visitors.use(peer, { before: 'cookie' });
      const started = await start(visitors);
      running.push({ app: started, visitors });
      return { url: started.url, errors, addresses, cookieName: visitors.cookieName as string };
    };

    it('adds no Set-Cookie and no cache header to a route that never touches the visitor', async () => {
      const { url, errors, addresses } = await app();
      const jar = createCookieJar();
      for (let i = 0; i < 2; i++) {
        const reply = await jar.request(`${url}/plain`);
        expect(reply.status).toBe(200);
        expect(reply.json()).toEqual({ plain: true });
        expect(reply.setCookies).toEqual([]);
        expect(reply.headers['cache-control']).toBeUndefined();
        expect(reply.headers.vary).toBeUndefined();
      }
      expect(addresses).toEqual([]);
      expect(errors).toEqual([]);
    });

    it('marks a route that reads visitor state Cache-Control: private and sets the visitor cookie', async () => {
      const { url, cookieName } = await app();
      const reply = await createCookieJar().request(`${url}/get`);
      expect(reply.status).toBe(200);
      expect(reply.headers['cache-control']).toBe('private');
      expect(reply.headers.vary).toBeUndefined();
      expect(reply.setCookies.filter((line) => line.startsWith(`${cookieName}=`))).toHaveLength(1);
    });

    it("with cacheControl: 'vary', marks a route that reads visitor state Vary: Cookie", async () => {
      const { url } = await app({ cacheControl: 'vary' });
      const reply = await createCookieJar().request(`${url}/get`);
      expect(reply.headers.vary).toMatch(/(^|,\s*)Cookie(\s*,|$)/);
      expect(reply.headers['cache-control']).toBeUndefined();
    });

    it('keeps a Cache-Control the handler chose', async () => {
      const { url } = await app();
      const reply = await createCookieJar().request(`${url}/own-cache`);
      expect(reply.status).toBe(200);
      expect(reply.headers['cache-control']).toBe('public, max-age=60');
    });

    it("keeps the handler's own cookies beside the visitor cookie", async () => {
      const { url, cookieName } = await app();
      const reply = await createCookieJar().request(`${url}/own-cookie`);
      const names = reply.setCookies.map((line) => line.slice(0, line.indexOf('=')));
      expect(names.sort()).toEqual([cookieName, 'lang', 'theme'].sort());
    });

    it('returns on the next request what the previous one set', async () => {
      const { url } = await app();
      const jar = createCookieJar();
      const set = await jar.request(`${url}/set?bin=suite:color&value=teal`);
      expect(set.status).toBe(200);
      const got = await jar.request(`${url}/get?bin=suite:color`);
      expect(got.json()).toEqual({ value: 'teal', id: set.json<{ id: string }>().id });
      expect(got.setCookies).toEqual([]);
    });

    it('shows a second client nothing of the first', async () => {
      const { url } = await app();
      const first = createCookieJar();
      await first.request(`${url}/set?bin=suite:color&value=teal`);
      const second = createCookieJar();
      const reply = await second.request(`${url}/get?bin=suite:color`);
      expect(reply.json<{ value?: string }>().value).toBeUndefined();
      expect(reply.json<{ id: string }>().id).not.toBe((await first.request(`${url}/id`)).json<{ id: string }>().id);
    });

    it('keeps the visitor ID stable across requests', async () => {
      const { url } = await app();
      const jar = createCookieJar();
      const first = (await jar.request(`${url}/id`)).json<{ id: string; source: string }>();
      expect(first.source).toBe('new');
      for (let i = 0; i < 3; i++) {
        const again = await jar.request(`${url}/id`);
        expect(again.json()).toEqual({ id: first.id, source: 'cookie', confidence: 'high' });
        expect(again.setCookies).toEqual([]);
      }
    });

    it('gives a forged cookie a fresh visitor and a 200', async () => {
      const { url, cookieName } = await app();
      const jar = createCookieJar();
      const genuine = (await jar.request(`${url}/id`)).json<{ id: string }>().id;
      const held = jar.get(cookieName) as string;
      jar.set(cookieName, `${held.startsWith('A') ? 'B' : 'A'}${held.slice(1)}`);
      const reply = await jar.request(`${url}/id`);
      expect(reply.status).toBe(200);
      const fresh = reply.json<{ id: string; source: string }>();
      expect(fresh.source).toBe('new');
      expect(fresh.id).not.toBe(genuine);
      expect(reply.setCookies.some((line) => line.startsWith(`${cookieName}=`))).toBe(true);
    });

    it('answers 200 with no value when the store fails, and reports the failure', async () => {
      const { url, errors } = await app({ store: failingStorage() });
      const reply = await createCookieJar().request(`${url}/get?bin=suite:color`);
      expect(reply.status).toBe(200);
      expect(reply.json<{ value?: unknown }>().value).toBeUndefined();
      expect(errors.some((error) => error instanceof StorageError)).toBe(true);
    });

    it('lands a write made after the response on the visitor whose cookie came with the request', async () => {
      const { url } = await app();
      const jar = createCookieJar();
      const { id } = (await jar.request(`${url}/id`)).json<{ id: string }>();
      const token = `t${Math.random()}`;
      const later = await jar.request(`${url}/late-set?token=${token}&bin=suite:late&value=kept`);
      expect(later.setCookies).toEqual([]);
      expect((await jar.request(`${url}/late-run?token=${token}`)).json()).toEqual({ outcome: 'stored' });
      expect((await jar.request(`${url}/get?bin=suite:late`)).json()).toEqual({ value: 'kept', id });
    });

    it('rejects with a CookieError a write made after the response for a visitor the client does not know yet', async () => {
      const { url } = await app();
      const token = `t${Math.random()}`;
      const jar = createCookieJar();
      await jar.request(`${url}/late-set?token=${token}&bin=suite:late&value=lost`);
      const { outcome } = (await jar.request(`${url}/late-run?token=${token}`)).json<{ outcome: string }>();
      expect(outcome).toMatch(/^CookieError: .*after the response headers were sent/);
    });

    it("tells resolvers the client's address", async () => {
      const { url, addresses } = await app();
      await createCookieJar().request(`${url}/id`);
      expect(addresses).toEqual(['127.0.0.1']);
    });
  });
}
