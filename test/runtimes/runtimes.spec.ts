// The library as users run it outside Node: the packed tarball, installed in an application of
// its own (scripts/ci-runtimes.sh makes it and names it in VISITOR_STATE_RUNTIMES_APP), served by
// Bun and Deno, and bundled with esbuild for a Cloudflare Worker run in workerd by Miniflare.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createCookieJar } from '../helpers/cookie-jar.js';
import { freePort, need } from '../helpers/services.js';

const app = process.env.VISITOR_STATE_RUNTIMES_APP ?? '';
const ready = await need('the runtimes application', () => app !== '', 'run scripts/ci-runtimes.sh');
const SECRET = 'runtimes-test-secret-long-enough-000001';

interface Visit {
  readonly visits: number;
  readonly id: string;
  readonly source: string;
  readonly runtime?: string;
}

/** Two requests with one cookie jar, as a browser that keeps cookies. */
async function visitTwice(url: string): Promise<[Visit, Visit, boolean]> {
  const jar = createCookieJar();
  const first = await jar.request(url);
  const issued = first.setCookies.some((line) => line.startsWith('vsid='));
  const second = await jar.request(url);
  expect([first.status, second.status]).toEqual([200, 200]);
  return [first.json<Visit>(), second.json<Visit>(), issued];
}

const servers: ChildProcess[] = [];
afterAll(() => {
  for (const server of servers) server.kill();
});

/** Starts `command` on a free port and waits for its "listening on" line. */
async function start(command: readonly string[], script: string, env: Record<string, string> = {}): Promise<string> {
  const port = await freePort();
  const [program = '', ...args] = command;
  const child = spawn(program, [...args, join(app, script)], {
    cwd: app,
    env: { ...process.env, ...env, PORT: String(port), VISITOR_STATE_SECRET: SECRET, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  servers.push(child);
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const seen = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes(`listening on ${port}`)) resolve();
    };
    child.stdout?.on('data', seen);
    child.stderr?.on('data', seen);
    child.once('exit', (code) => reject(new Error(`${program} ${script} exited with ${code}:\n${output}`)));
    setTimeout(() => reject(new Error(`${program} ${script} did not listen within 30 s:\n${output}`)), 30_000);
  });
  return `http://127.0.0.1:${port}`;
}

const runtimes = [
  { name: 'Bun', command: [join(app, 'node_modules/.bin/bun')] },
  { name: 'Deno', command: [join(app, 'node_modules/.bin/deno'), 'run', '--allow-all', '--unstable-kv'] },
] as const;

describe.each(ready ? runtimes : [])('on $name', ({ name, command }) => {
  it('the Fetch quick start counts visits 1 then 2 and keeps the visitor ID', async () => {
    const base = await start(command, 'fetch-app.mjs');
    const [first, second, issued] = await visitTwice(`${base}/`);
    expect(first).toMatchObject({ visits: 1, source: 'new', runtime: name.toLowerCase() });
    expect(second).toMatchObject({ visits: 2, source: 'cookie', id: first.id });
    expect(issued).toBe(true);
  });

  it('the Fetch quick start keeps state in an unstorage instance', async () => {
    const base = await start(command, 'fetch-app.mjs', { STORE: 'unstorage' });
    const [first, second] = await visitTwice(`${base}/`);
    expect([first.visits, second.visits]).toEqual([1, 2]);
    expect(second.id).toBe(first.id);
  });

  if (name === 'Deno')
    it('the Fetch quick start keeps state in Deno KV through unstorage', async () => {
      const base = await start(command, 'fetch-app.mjs', { STORE: 'deno-kv' });
      const [first, second] = await visitTwice(`${base}/`);
      expect([first.visits, second.visits]).toEqual([1, 2]);
      expect(second.id).toBe(first.id);
    });

  it('the Hono quick start counts visits 1 then 2, and a route without the visitor gets no cookie', async () => {
    const base = await start(command, 'hono-app.mjs');
    const [first, second] = await visitTwice(`${base}/`);
    expect(first).toMatchObject({ visits: 1, source: 'new', runtime: name.toLowerCase() });
    expect(second).toMatchObject({ visits: 2, source: 'cookie', id: first.id });
    const about = await createCookieJar().request(`${base}/about`);
    expect(about.status).toBe(200);
    expect(about.setCookies).toEqual([]);
  });
});

interface MiniflareLike {
  dispatchFetch(url: string, init?: { headers?: Record<string, string> }): Promise<Response>;
  getKVNamespace(name: string): Promise<{
    list(): Promise<{ keys: { name: string; expiration?: number }[] }>;
  }>;
  dispose(): Promise<void>;
}

describe.runIf(ready)('as a Cloudflare Worker', () => {
  let worker: MiniflareLike | undefined;
  afterAll(async () => worker?.dispose());

  it('bundles with esbuild and the workerd condition, with no store driver the Worker does not use', async () => {
    const esbuild = (await import(pathToFileURL(join(app, 'node_modules/esbuild/lib/main.js')).href)) as {
      build(options: object): Promise<{ errors: unknown[]; warnings: unknown[] }>;
    };
    // What wrangler does for a Worker with nodejs_compat: the browser platform, the workerd and
    // worker conditions, and node: built-ins left to the runtime.
    const result = await esbuild.build({
      absWorkingDir: app,
      entryPoints: ['worker.mjs'],
      outfile: 'dist/worker.js',
      bundle: true,
      format: 'esm',
      platform: 'browser',
      conditions: ['workerd', 'worker', 'browser'],
      external: ['node:*'],
      logLevel: 'silent',
    });
    expect(result.errors).toEqual([]);
    const bundle = await readFile(join(app, 'dist/worker.js'), 'utf8');
    for (const driver of ['pg', '@redis/client', 'sqlite3', 'better-sqlite3'])
      expect(bundle, driver).not.toContain(`from "${driver}"`);
  });

  it('keeps state across requests in the memory store: visits 1 then 2, one visitor ID', async () => {
    const { Miniflare } = (await import(pathToFileURL(join(app, 'node_modules/miniflare/dist/src/index.js')).href)) as {
      Miniflare: new (options: object) => MiniflareLike;
    };
    worker = new Miniflare({
      // The bundle as one module, as wrangler uploads it.
      modules: [{ type: 'ESModule', path: join(app, 'dist/worker.js') }],
      modulesRoot: join(app, 'dist'),
      compatibilityDate: '2025-09-01',
      compatibilityFlags: ['nodejs_compat'],
      kvNamespaces: ['VISITOR_STATE'],
      bindings: { VISITOR_STATE_SECRET: SECRET },
    });
    const [first, second] = await visitWorkerTwice(worker, '/memory');
    expect([first.visits, second.visits]).toEqual([1, 2]);
    expect(second.id).toBe(first.id);
  });

  it('keeps state across requests through the Hono entry: visits 1 then 2, one visitor ID', async () => {
    if (!worker) throw new Error('the Worker did not start');
    const [first, second] = await visitWorkerTwice(worker, '/hono');
    expect([first.visits, second.visits]).toEqual([1, 2]);
    expect(second.id).toBe(first.id);
  });

  it('refuses a store whose driver is not in the bundle, with a ConfigError that says what to use', async () => {
    if (!worker) throw new Error('the Worker did not start');
    const refused = await (await worker.dispatchFetch('http://localhost/redis')).json();
    expect(refused).toEqual({
      name: 'ConfigError',
      code: 'ERR_VISITOR_STATE_CONFIG',
      message:
        "store 'redis://127.0.0.1:6379' needs the package @redis/client, which a Worker cannot load at run time; on Cloudflare Workers use an unstorage instance (Workers KV) or 'cookie:'",
    });
  });

  it('keeps state across requests in Workers KV through unstorage, each bin a KV key that expires', async () => {
    if (!worker) throw new Error('the Worker did not start');
    const [first, second] = await visitWorkerTwice(worker, '/kv');
    expect([first.visits, second.visits]).toEqual([1, 2]);
    expect(second.id).toBe(first.id);
    const { keys } = await (await worker.getKVNamespace('VISITOR_STATE')).list();
    const key = keys.find((entry) => entry.name === `vs:${first.id}:demo%3Avisits`);
    expect(key, JSON.stringify(keys)).toBeDefined();
    // KV expiry is in seconds since the epoch; a bin gets at least KV's own 60 s minimum.
    expect(key?.expiration).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000) + 60);
  });
});

async function visitWorkerTwice(worker: MiniflareLike, path: string): Promise<[Visit, Visit]> {
  const first = await worker.dispatchFetch(`http://localhost${path}`);
  const body = await first.text();
  expect(first.status, body).toBe(200);
  const cookie = first.headers.get('set-cookie')?.split(';')[0];
  expect(cookie).toMatch(/^vsid=/);
  const second = await worker.dispatchFetch(`http://localhost${path}`, { headers: { cookie: cookie ?? '' } });
  const secondBody = await second.text();
  expect(second.status, secondBody).toBe(200);
  return [JSON.parse(body) as Visit, JSON.parse(secondBody) as Visit];
}
