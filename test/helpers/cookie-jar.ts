import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { parseSetCookie } from 'cookie';

/** What one request through a {@link CookieJar} returned. */
export interface JarResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** The raw Set-Cookie header lines of this response, in order. */
  readonly setCookies: readonly string[];
  /** The body parsed as JSON. */
  json<T = unknown>(): T;
}

/** Options of one {@link CookieJar.request}. */
export interface JarRequestInit {
  /** @default 'GET', or 'POST' when a body is given */
  method?: string;
  headers?: Record<string, string>;
  /** A body sent as it is. */
  body?: string;
  /** A body sent as JSON, with `content-type: application/json`; ignored when `body` is given. */
  json?: unknown;
}

/**
 * A tiny HTTP client that keeps cookies between requests, as a browser would for one site:
 * it sends what earlier responses set, forgets a cookie set with `Max-Age=0` (or an
 * `Expires` in the past) or once its `Max-Age` has run out, and keeps values raw, exactly
 * as the server wrote them. Domain and path are not matched: a jar stands for one site.
 */
export interface CookieJar {
  request(url: string | URL, init?: JarRequestInit): Promise<JarResponse>;
  /** The raw Set-Cookie lines of the last response; empty before the first. */
  readonly lastSetCookies: readonly string[];
  /** The cookies the jar would send now, by name. */
  cookies(): Record<string, string>;
  /** A cookie's value as the jar holds it. */
  get(name: string): string | undefined;
  /** Puts a cookie in the jar by hand (to forge or replay one), sent raw. */
  set(name: string, value: string): void;
  delete(name: string): void;
}

interface Held {
  value: string;
  expiresAt: number;
}

/**
 * Makes an empty {@link CookieJar}.
 *
 * @example
 * ```ts
 * const jar = createCookieJar();
 * await jar.request(`${base}/login`, { body: { user: 'ada' } });
 * const me = await jar.request(`${base}/me`); // sends the cookies /login set
 * me.json(); jar.lastSetCookies;
 * ```
 */
export function createCookieJar(): CookieJar {
  const held = new Map<string, Held>();
  let last: readonly string[] = [];

  const live = (): Record<string, string> => {
    const now = Date.now();
    const out: Record<string, string> = {};
    for (const [name, cookie] of held) {
      if (cookie.expiresAt > now) out[name] = cookie.value;
      else held.delete(name);
    }
    return out;
  };

  const store = (line: string): void => {
    const cookie = parseSetCookie(line, { decode: (raw) => raw });
    const expiresAt =
      cookie.maxAge !== undefined
        ? Date.now() + cookie.maxAge * 1_000
        : (cookie.expires?.getTime() ?? Number.POSITIVE_INFINITY);
    if (expiresAt <= Date.now()) held.delete(cookie.name);
    else held.set(cookie.name, { value: cookie.value ?? '', expiresAt });
  };

  return {
    get lastSetCookies() {
      return last;
    },

    request(url, init = {}) {
      const body = init.body ?? (init.json === undefined ? undefined : JSON.stringify(init.json));
      const headers: Record<string, string> = { ...init.headers };
      if (init.body === undefined && init.json !== undefined) headers['content-type'] ??= 'application/json';
      const cookieHeader = Object.entries(live())
        .map(([name, value]) => `${name}=${value}`)
        .join('; ');
      if (cookieHeader) headers.cookie = cookieHeader;
      return new Promise((resolve, reject) => {
        const req = httpRequest(
          url,
          { method: init.method ?? (body === undefined ? 'GET' : 'POST'), headers, agent: false },
          (res) => {
            const parts: Buffer[] = [];
            res.on('data', (part: Buffer) => parts.push(part));
            res.on('error', reject);
            res.on('end', () => {
              const setCookies = res.headers['set-cookie'] ?? [];
              for (const line of setCookies) store(line);
              last = setCookies;
              const text = Buffer.concat(parts).toString('utf8');
              resolve({
                status: res.statusCode ?? 0,
                headers: res.headers,
                body: text,
                setCookies,
                json: <T>() => JSON.parse(text) as T,
              });
            });
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    },

    cookies: live,

    get(name) {
      return live()[name];
    },

    set(name, value) {
      held.set(name, { value, expiresAt: Number.POSITIVE_INFINITY });
    },

    delete(name) {
      held.delete(name);
    },
  };
}

/** A {@link CookieJar}-like client over tough-cookie, strict as RFC 6265bis asks. */
export interface StrictCookieJar {
  /** Sends to `server` (the real address) a request for `path` as if to the jar's origin. */
  request(path: string, init?: JarRequestInit): Promise<JarResponse>;
  /** The raw Set-Cookie lines of the last response; empty before the first. */
  readonly lastSetCookies: readonly string[];
  /** Set-Cookie lines the jar refused, with the reason, since it was made. */
  readonly refused: readonly { line: string; reason: string }[];
  /** The cookies the jar would send to the origin's `/` now, by name. */
  cookies(): Promise<Record<string, string>>;
  /** Stores a cookie as if the origin had set it (`name=value; Path=/`), to forge or replay one. */
  set(name: string, value: string): Promise<void>;
}

/**
 * A cookie jar that keeps what a strict RFC 6265bis user agent keeps: tough-cookie with
 * `prefixSecurity: 'strict'` (a `__Host-` or `__Secure-` cookie that breaks its prefix's rules
 * is refused), Secure cookies stored only from a secure origin (localhost counts as one), and
 * domain, path and expiry matched as a browser does. Requests go to `server`, with the Host
 * header of `origin`, so a test can stand for a public host name over plain http.
 *
 * @example
 * ```ts
 * const jar = createStrictCookieJar(base, 'http://shop.example');
 * await jar.request('/set/theme', { json: 'dark' });
 * await jar.cookies(); // { 'vs_data.0': '…' }
 * ```
 */
export async function createStrictCookieJar(server: string, origin = server): Promise<StrictCookieJar> {
  const { CookieJar: ToughJar } = await import('tough-cookie');
  const jar = new ToughJar(undefined, {
    prefixSecurity: 'strict',
    rejectPublicSuffixes: true,
    looseMode: false,
    allowSecureOnLocal: true,
    enforceSecureOriginOnStorage: true,
  });
  const refused: { line: string; reason: string }[] = [];
  let last: readonly string[] = [];
  const originUrl = new URL(origin);
  const root = new URL('/', originUrl).href;

  return {
    get lastSetCookies() {
      return last;
    },
    refused,

    async request(path, init = {}) {
      const url = new URL(path, originUrl).href;
      const body = init.body ?? (init.json === undefined ? undefined : JSON.stringify(init.json));
      const headers: Record<string, string> = { host: originUrl.host, ...init.headers };
      if (init.body === undefined && init.json !== undefined) headers['content-type'] ??= 'application/json';
      const cookieHeader = await jar.getCookieString(url);
      if (cookieHeader) headers.cookie = cookieHeader;
      const res = await new Promise<{ status: number; headers: IncomingHttpHeaders; text: string }>(
        (resolve, reject) => {
          const req = httpRequest(
            new URL(path, server),
            { method: init.method ?? (body === undefined ? 'GET' : 'POST'), headers, agent: false },
            (response) => {
              const parts: Buffer[] = [];
              response.on('data', (part: Buffer) => parts.push(part));
              response.on('error', reject);
              response.on('end', () =>
                resolve({
                  status: response.statusCode ?? 0,
                  headers: response.headers,
                  text: Buffer.concat(parts).toString('utf8'),
                }),
              );
            },
          );
          req.on('error', reject);
          req.end(body);
        },
      );
      const setCookies = res.headers['set-cookie'] ?? [];
      for (const line of setCookies) {
        try {
          await jar.setCookie(line, url);
        } catch (error) {
          refused.push({ line, reason: error instanceof Error ? error.message : String(error) });
        }
      }
      last = setCookies;
      return {
        status: res.status,
        headers: res.headers,
        body: res.text,
        setCookies,
        json: <T>() => JSON.parse(res.text) as T,
      };
    },

    async cookies() {
      const held = await jar.getCookies(root);
      return Object.fromEntries(held.map((cookie) => [cookie.key, cookie.value]));
    },

    async set(name, value) {
      await jar.setCookie(`${name}=${value}; Path=/`, root);
    },
  };
}
