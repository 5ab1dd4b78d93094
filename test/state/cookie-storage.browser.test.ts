import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, maxHeaderSize, type Server } from 'node:http';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { cookieStorage } from '../../src/state/cookie-storage.js';
import { createVisitorState, type VisitorState } from '../../src/visitor-state.js';
import { launchChromium, needChromium } from '../helpers/browser.js';

const hasChromium = await needChromium();
const SECRET = 'a-secret-for-the-chromium-cookie-tests-012345';

interface App {
  readonly url: string;
  /** Bytes of the Cookie header of the last request that reached the application. */
  lastCookieBytes: number;
}

const readBody = async (req: IncomingMessage): Promise<unknown> => {
  const parts: Buffer[] = [];
  for await (const part of req) parts.push(part as Buffer);
  return parts.length ? JSON.parse(Buffer.concat(parts).toString('utf8')) : undefined;
};

/**
 * A node:http server at default settings whose `ui:*` bins live in cookies: `POST /set` stores
 * each bin of a JSON object (500 with the error when the store refuses one); `GET /?bins=a,b`
 * renders those bins as JSON in a page.
 */
async function startApp(visitors: VisitorState): Promise<App> {
  const app = { url: '', lastCookieBytes: 0 };
  const server = createServer((req, res) => {
    app.lastCookieBytes = Buffer.byteLength(req.headers.cookie ?? '');
    (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const visitor = await visitors.resolve(req, res);
      if (url.pathname === '/set') {
        for (const [bin, data] of Object.entries((await readBody(req)) as Record<string, unknown>)) {
          await visitor.cache.set(bin, data);
        }
        res.end('stored');
        return;
      }
      const names = (url.searchParams.get('bins') ?? '').split(',').filter(Boolean);
      const values = await visitor.cache.getMany(names);
      const state = Object.fromEntries(names.map((name, i) => [name, values[i] ?? null]));
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(`<!doctype html><title>state</title><pre id="state">${escapeHtml(JSON.stringify(state))}</pre>`);
    })().catch((error: unknown) => {
      res.statusCode = 500;
      res.end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('server has no port');
  app.url = `http://127.0.0.1:${address.port}`;
  return app;
}

const escapeHtml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');
const text = (chars: number) => randomBytes(chars).toString('base64url').slice(0, chars);
const servers: Server[] = [];
const states: VisitorState[] = [];
let browser: Browser | undefined;

beforeAll(async () => {
  if (hasChromium) browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await Promise.all(states.map((state) => state.close()));
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

/** Stores one bin from the page, as its own script would; resolves to the HTTP status. */
const store = (page: Page, bin: string, data: string) =>
  page.evaluate(
    async ([name, value]) =>
      (
        await fetch('/set', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ [name as string]: value }),
        })
      ).status,
    [bin, data],
  );

/**
 * Fills the cookie state from the page up to the largest the budget admits: 200-character bins
 * until the store refuses one, then one last bin as long as still fits (a refused `set` writes
 * nothing). Resolves to the bins stored.
 */
async function fill(page: Page): Promise<Record<string, string>> {
  const held: Record<string, string> = {};
  for (let i = 0; ; i++) {
    const data = text(200);
    if ((await store(page, `ui:fill:${i}`, data)) !== 200) break;
    held[`ui:fill:${i}`] = data;
  }
  let fits = 0;
  let refused = 200;
  while (refused - fits > 1) {
    const length = (fits + refused) >> 1;
    const data = text(length);
    if ((await store(page, 'ui:last', data)) === 200) {
      fits = length;
      held['ui:last'] = data;
    } else {
      refused = length;
    }
  }
  return held;
}

const shown = async (page: Page) => JSON.parse((await page.textContent('#state')) ?? 'null') as unknown;

describe.skipIf(!hasChromium)('cookie storage in Chromium behind node:http at default settings', () => {
  it.each([
    ['the default budget', undefined, 6_144],
    ['the largest budget a default Node admits', maxHeaderSize - 4_096, 12_288],
  ])(
    'reloads intact the largest state of %s',
    async (_, maxBytes, expectedBudget) => {
      const storage = cookieStorage(maxBytes === undefined ? {} : { maxBytes });
      expect(storage.maxBytes).toBe(expectedBudget);
      const visitors = createVisitorState({ secret: SECRET, bins: { 'ui:*': { store: storage } }, onError: () => {} });
      states.push(visitors);
      const app = await startApp(visitors);
      const context = await (browser as Browser).newContext();
      const page = await context.newPage();
      try {
        await page.goto(`${app.url}/`);
        const held = await fill(page);
        expect(Object.keys(held).length).toBeGreaterThan(10);

        const response = await page.goto(`${app.url}/?bins=${Object.keys(held).join(',')}`);
        expect(response?.status()).toBe(200);
        await page.reload();
        expect(await shown(page)).toEqual(held);

        // What Chromium sent: the visitor cookie and every chunk, within the budget.
        expect(app.lastCookieBytes).toBeLessThanOrEqual(expectedBudget);
        expect(app.lastCookieBytes).toBeGreaterThan(expectedBudget - 600);
        const cookies = await context.cookies(app.url);
        const chunks = cookies.filter((cookie) => cookie.name.startsWith('vs_data.'));
        expect(chunks.length).toBeLessThanOrEqual(storage.maxChunks);
        console.log(
          `budget ${expectedBudget}: ${Object.keys(held).length} bins, ${JSON.stringify(held).length} characters of JSON, ` +
            `${chunks.length} chunk cookies, a Cookie header of ${app.lastCookieBytes} bytes, reloaded intact`,
        );
      } finally {
        await context.close();
      }
    },
    120_000,
  );

  it('refuses at construction a budget whose full state Node would answer with 431', async () => {
    expect(() => cookieStorage({ maxBytes: maxHeaderSize })).toThrow(ConfigError);
    expect(() => cookieStorage({ maxBytes: maxHeaderSize - 4_096 + 1 })).toThrow(/--max-http-header-size/);

    // Why: Chromium sending cookies of that size to a default node:http server gets 431, on every path.
    const visitors = createVisitorState({ secret: SECRET, onError: () => {} });
    states.push(visitors);
    const app = await startApp(visitors);
    const context = await (browser as Browser).newContext();
    try {
      // 16,500 bytes of cookies, the full state of a 16 KiB budget.
      const value = text(3_290);
      await context.addCookies(Array.from({ length: 5 }, (_, i) => ({ name: `vs_data.${i}`, value, url: app.url })));
      const page = await context.newPage();
      const statuses: number[] = [];
      page.on('response', (response) => statuses.push(response.status()));
      // Node answers 431 with an empty body, which Chromium shows as an error page.
      await expect(page.goto(`${app.url}/any/path`)).rejects.toThrow(/ERR_HTTP_RESPONSE_CODE_FAILURE/);
      expect(statuses[0]).toBe(431);
    } finally {
      await context.close();
    }
  });
});
