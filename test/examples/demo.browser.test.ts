import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, needChromium, screenshotOnFailure } from '../helpers/browser.js';
import { freePort } from '../helpers/services.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DARK_BACKGROUND = 'rgb(18, 22, 28)';

interface Demo {
  readonly url: string;
  /** Sends the signal and resolves to the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  output(): string;
}

/** The demo exactly as `npm start` runs it, as a child process with its data in `dataDir`. */
function startDemo(dataDir: string, port: number): Promise<Demo> {
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), DATA_DIR: dataDir };
  delete env.VISITOR_STATE_SECRET;
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'examples/demo/server.ts'], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the demo did not print its URL within 20 s:\n${output}`));
    }, 20_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const url = /visitor-state demo on (http:\/\/\S+)/.exec(output)?.[1];
      if (url === undefined) return;
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stdout?.on('data', (more: Buffer) => {
        output += more.toString();
      });
      resolve({
        url,
        output: () => output,
        stop(signal = 'SIGTERM') {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          return exited;
        },
      });
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited with code ${code} before printing its URL:\n${output}`));
    });
  });
}

/** What the page shows. */
async function shown(page: Page) {
  const text = async (selector: string) => ((await page.locator(selector).textContent()) ?? '').trim();
  return {
    id: await text('#visitor-id'),
    source: await text('#source'),
    user: await text('#user'),
    city: await text('#city'),
    theme: await text('#theme'),
    dataTheme: await page.locator('html').getAttribute('data-theme'),
    // A string, since the tests compile without the DOM's types.
    background: await page.evaluate<string>('getComputedStyle(document.body).backgroundColor'),
  };
}

/** Clicks a button that posts a form and waits for the page the redirect leads to. */
async function submit(page: Page, button: string): Promise<void> {
  await Promise.all([page.waitForEvent('load'), page.getByRole('button', { name: button }).click()]);
}

async function chooseCity(page: Page, city: string) {
  await page.getByLabel('City').selectOption(city);
  await submit(page, 'Save city');
}

async function chooseTheme(page: Page, theme: string) {
  await page.getByLabel('Theme').selectOption(theme);
  await submit(page, 'Save theme');
}

async function logIn(page: Page, name: string) {
  await page.getByLabel('Name').fill(name);
  await submit(page, 'Log in');
}

const chromiumThere = await needChromium();

// A browser on two shared cores: a page and a few form posts can take seconds when the machine is busy.
describe.skipIf(!chromiumThere)('the demo in headless Chromium', { timeout: 60_000 }, () => {
  let dir: string;
  let port: number;
  let demo: Demo;
  let browser: Browser;
  let failed = false;
  const contexts: BrowserContext[] = [];

  const newPage = async () => {
    const context = await browser.newContext();
    contexts.push(context);
    return { context, page: await context.newPage() };
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vs-demo-'));
    port = await freePort();
    [demo, browser] = await Promise.all([startDemo(join(dir, 'data'), port), launchChromium()]);
  });

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });

  afterAll(async () => {
    await Promise.all(contexts.map((context) => context.close()));
    await browser?.close();
    await demo?.stop();
    if (failed) console.error(`the demo's data and screenshots are kept in ${dir}`);
    else if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps the visitor ID, the city and the theme across login, logout and reload', async () => {
    const { context, page } = await newPage();
    await screenshotOnFailure(page, dir, 'login-logout', async () => {
      await page.goto(demo.url);
      const first = await shown(page);
      expect(first).toMatchObject({ source: 'new', user: 'nobody', city: 'not chosen yet', dataTheme: 'light' });
      expect(first.id).toMatch(/^[A-Za-z0-9_-]{8}…$/);

      await chooseCity(page, 'Lyon');
      await chooseTheme(page, 'dark');
      expect(await shown(page)).toMatchObject({
        id: first.id,
        source: 'cookie',
        city: 'Lyon, France',
        theme: 'dark',
        dataTheme: 'dark',
        background: DARK_BACKGROUND,
      });

      await logIn(page, 'Ada <b>&amp;');
      const loggedIn = await shown(page);
      expect(loggedIn).toMatchObject({ id: first.id, user: 'Ada <b>&amp;', city: 'Lyon, France', theme: 'dark' });
      expect(await page.locator('#user b').count()).toBe(0);

      await submit(page, 'Log out');
      expect(await shown(page)).toMatchObject({ id: first.id, user: 'nobody', city: 'Lyon, France', theme: 'dark' });

      await page.reload();
      expect(await shown(page)).toMatchObject({
        id: first.id,
        source: 'cookie',
        user: 'nobody',
        city: 'Lyon, France',
        dataTheme: 'dark',
        background: DARK_BACKGROUND,
      });

      const api = await (await context.request.get(new URL('/api/visitor', demo.url).href)).json();
      expect(api).toEqual({
        id: expect.stringMatching(new RegExp(`^${first.id.slice(0, 8)}`)),
        source: 'cookie',
        confidence: 'high',
        user: null,
        geo: { city: 'Lyon', country: 'France' },
        theme: 'dark',
      });
      await page.screenshot({ path: '/tmp/demo.png', fullPage: true });
    });
  });

  it('shows a fresh browser context as a new visitor that sees none of it', async () => {
    const first = await newPage();
    const second = await newPage();
    await screenshotOnFailure(first.page, dir, 'fresh-context-first', async () => {
      await first.page.goto(demo.url);
      await chooseCity(first.page, 'Osaka');
      await chooseTheme(first.page, 'dark');
      await logIn(first.page, 'Grace');
    });
    const firstId = (await shown(first.page)).id;
    await screenshotOnFailure(second.page, dir, 'fresh-context-second', async () => {
      await second.page.goto(demo.url);
      const fresh = await shown(second.page);
      expect(fresh).toMatchObject({ source: 'new', user: 'nobody', city: 'not chosen yet', theme: 'not chosen yet' });
      expect(fresh.dataTheme).toBe('light');
      expect(fresh.id).not.toBe(firstId);
    });
  });

  it('puts a second browser that logs in as the same user on the same visitor and its choices', async () => {
    const laptop = await newPage();
    const phone = await newPage();
    let laptopId = '';
    await screenshotOnFailure(laptop.page, dir, 'same-user-laptop', async () => {
      await laptop.page.goto(demo.url);
      await chooseCity(laptop.page, 'Lisbon');
      await chooseTheme(laptop.page, 'dark');
      await logIn(laptop.page, 'Margaret');
      laptopId = (await shown(laptop.page)).id;
    });
    await screenshotOnFailure(phone.page, dir, 'same-user-phone', async () => {
      await phone.page.goto(demo.url);
      const before = await shown(phone.page);
      expect(before).toMatchObject({ source: 'new', city: 'not chosen yet', theme: 'not chosen yet' });
      expect(before.id).not.toBe(laptopId);

      await logIn(phone.page, 'Margaret');
      expect(await shown(phone.page)).toMatchObject({
        id: laptopId,
        user: 'Margaret',
        city: 'Lisbon, Portugal',
        theme: 'dark',
        background: DARK_BACKGROUND,
      });
      // One visitor: a choice made on the phone is the laptop's too.
      await chooseCity(phone.page, 'Osaka');
    });
    await laptop.page.reload();
    expect(await shown(laptop.page)).toMatchObject({ id: laptopId, city: 'Osaka, Japan', theme: 'dark' });
  });

  it('answers a wrong address, a refused form, a body over 2 kB and GET /login with pages that say so', async () => {
    const { context, page } = await newPage();
    await screenshotOnFailure(page, dir, 'error-pages', async () => {
      const missing = await page.goto(new URL('/no/such/page', demo.url).href);
      expect(missing?.status()).toBe(404);
      expect(await page.locator('#title').textContent()).toBe('Not found');

      const login = await page.goto(new URL('/login', demo.url).href);
      expect(login?.status()).toBe(200);
      await logIn(page, 'Barbara');
      expect(page.url()).toBe(new URL('/', demo.url).href);
      expect((await shown(page)).user).toBe('Barbara');

      const post = (form: Record<string, string>, path = '/choices') =>
        context.request.post(new URL(path, demo.url).href, { form, maxRedirects: 0 });
      const city = await post({ city: 'Atlantis' });
      expect(city.status()).toBe(400);
      expect(await city.text()).toContain('That city is not on the list');
      const name = await post({ name: '' }, '/login');
      expect(name.status()).toBe(400);
      expect(await name.text()).toContain('A name is 1 to 40 characters');

      const large = await post({ name: 'x'.repeat(3_000) }, '/login');
      expect(large.status()).toBe(413);
      const body = await large.text();
      expect(body).toContain('more than the 2 kB the demo takes');
      // No stack trace, no path of the server's files.
      expect(body).not.toMatch(/\bat \S+ \(|node_modules|\/examples\/|PayloadTooLargeError/);
      expect(body).not.toContain(ROOT);
    });
  });

  it('gives a new visitor once the browser clears its cookies', async () => {
    const { context, page } = await newPage();
    await screenshotOnFailure(page, dir, 'cleared-cookies', async () => {
      await page.goto(demo.url);
      await chooseCity(page, 'Nairobi');
      await logIn(page, 'Linus');
      const before = await shown(page);
      expect(before.city).toBe('Nairobi, Kenya');

      await context.clearCookies();
      await page.reload();
      const after = await shown(page);
      expect(after).toMatchObject({ source: 'new', user: 'nobody', city: 'not chosen yet' });
      expect(after.id).not.toBe(before.id);
    });
  });

  it('keeps its visitors across a restart and exits with 0 on Ctrl-C', async () => {
    const { page } = await newPage();
    await screenshotOnFailure(page, dir, 'restart', async () => {
      await page.goto(demo.url);
      await chooseCity(page, 'São Paulo');
      const before = await shown(page);

      expect(await demo.stop('SIGINT')).toBe(0);
      expect(demo.output()).toContain('SIGINT: stopping the visitor-state demo');
      expect((await stat(join(dir, 'data', 'demo-secret'))).mode & 0o777).toBe(0o600);

      demo = await startDemo(join(dir, 'data'), port);
      await page.reload();
      expect(await shown(page)).toMatchObject({ id: before.id, source: 'cookie', city: 'São Paulo, Brazil' });
    });
  });
});
