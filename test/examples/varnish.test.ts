import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CookieJar, createCookieJar, type JarRequestInit } from '../helpers/cookie-jar.js';
import { cookiePair, send, serve, type TestServer } from '../helpers/http.js';
import { canConnect, freePort, hasProgram, need } from '../helpers/services.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const haveVarnish = await need('varnishd', () => hasProgram('varnishd'), 'install it with: apt-get install -y varnish');

interface Running {
  readonly output: () => string;
  readonly exited: () => boolean;
  stop(): Promise<void>;
}

/** A child process whose output is kept for error messages; stop() asks it to end, then insists. */
function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Running {
  const child: ChildProcess = spawn(command, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (part: Buffer) => (output += part.toString('utf8')));
  child.stderr?.on('data', (part: Buffer) => (output += part.toString('utf8')));
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  return {
    output: () => output,
    exited,
    async stop() {
      if (exited()) return;
      const gone = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
    },
  };
}

async function waitUntil(what: string, proc: Running, ready: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (proc.exited()) throw new Error(`${what} exited before it was ready:\n${proc.output()}`);
    if (await ready()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} was not ready within 20 s:\n${proc.output()}`);
}

/** What the example app's /state answers. */
interface StateReply {
  geo: { city: string } | null;
  theme: string | null;
  clientIp: string | null;
  cookies: string[];
}

/** One response that Varnish served, as the tests keep it. */
interface Served {
  readonly url: string;
  readonly xCache: string | undefined;
  readonly setCookies: readonly string[];
}

describe.skipIf(!haveVarnish)('visitor state behind a real Varnish', () => {
  let dir = '';
  let app: Running | undefined;
  let varnish: Running | undefined;
  let backend: TestServer | undefined;
  let base = '';
  const served: Served[] = [];
  const counts = new Map<string, number>();

  const keep = (url: string, headers: Record<string, string | string[] | undefined>, setCookies: readonly string[]) => {
    const xCache = headers['x-cache'];
    served.push({ url, xCache: typeof xCache === 'string' ? xCache : undefined, setCookies });
  };

  /** A request through Varnish with exactly these headers (no cookies unless given). */
  const get = async (path: string, options: Parameters<typeof send>[1] = {}) => {
    const reply = await send(`${base}${path}`, options);
    keep(path, reply.headers, reply.setCookies);
    return reply;
  };

  /** A request through Varnish as a browser that keeps its cookies. */
  const browse = async (jar: CookieJar, path: string, init?: JarRequestInit) => {
    const reply = await jar.request(`${base}${path}`, init);
    keep(path, reply.headers, reply.setCookies);
    return reply;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vs-varnish-'));
    const appPort = await freePort();
    app = run(process.execPath, ['--import', 'tsx', 'examples/varnish/app.ts'], {
      ...process.env,
      PORT: String(appPort),
    });
    await waitUntil('the example app', app, () => canConnect(`http://127.0.0.1:${appPort}`));

    // Varnish's backend: the example app, except for two URLs answered the way a mistaken page
    // would (public, yet setting a cookie or private), to show the VCL never stores those.
    backend = await serve((req, res) => {
      const path = req.url ?? '/';
      if (path.startsWith('/mistake/')) {
        const n = (counts.get(path) ?? 0) + 1;
        counts.set(path, n);
        if (path === '/mistake/set-cookie') {
          res.setHeader('cache-control', 'public, max-age=60');
          res.setHeader('set-cookie', 'vsid=somebody-else; Path=/; HttpOnly');
        } else {
          res.setHeader('cache-control', 'private');
        }
        res.end(`answer ${n}`);
        return;
      }
      const upstream = httpRequest(
        { host: '127.0.0.1', port: appPort, method: req.method, path, headers: req.headers, agent: false },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', (error) => res.destroy(error));
      req.pipe(upstream);
    });

    const vcl = await readFile(join(root, 'examples/varnish/default.vcl'), 'utf8');
    const ours = vcl.replace(/(\.port\s*=\s*)"3000";/, `$1"${new URL(backend.url).port}";`);
    if (ours === vcl) throw new Error('default.vcl has no `.port = "3000";` to point at the test backend');
    const vclPath = join(dir, 'default.vcl');
    await writeFile(vclPath, ours);

    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    // -F: stay in the foreground as our child; -j none: run as root without dropping to the
    // varnish user (which could not read the temporary folder); -T none: no admin port.
    varnish = run('varnishd', [
      '-F',
      '-n',
      join(dir, 'varnish'),
      '-a',
      `127.0.0.1:${port}`,
      '-f',
      vclPath,
      '-s',
      'malloc,32m',
      '-T',
      'none',
      '-j',
      'none',
      '-p',
      'thread_pools=1',
      '-p',
      'thread_pool_min=5',
      '-p',
      'thread_pool_max=50',
      '-p',
      'vsl_space=1M',
    ]);
    await waitUntil('varnishd', varnish, async () => {
      if (!(await canConnect(base))) return false;
      return (await send(`${base}/ready`)).status === 404;
    });
  });

  afterAll(async () => {
    await varnish?.stop();
    await backend?.close();
    await app?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('serves the second anonymous request for a public page from its cache', async () => {
    const first = await get('/');
    const second = await get('/');
    expect(first.status).toBe(200);
    expect(first.headers['x-cache']).toBe('MISS');
    expect(second.headers['x-cache']).toBe('HIT');
    // Varnish's own mark of a hit: the ID of this request and that of the one that stored the object.
    expect(String(second.headers['x-varnish']).split(' ')).toHaveLength(2);
    expect(second.body).toBe(first.body);
    expect([...first.setCookies, ...second.setCookies]).toEqual([]);
  });

  it('serves a public page from its cache to a visitor who sends the visitor cookie', async () => {
    const jar = createCookieJar();
    await browse(jar, '/state');
    expect(jar.get('vsid')).toBeDefined();
    jar.set('_ga', 'GA1.2.3.4');

    const anonymous = await get('/articles/1');
    const known = await browse(jar, '/articles/1');
    expect(known.headers['x-cache']).toBe('HIT');
    expect(known.setCookies).toEqual([]);
    expect(known.body.split('\n')[3]).toBe(anonymous.body.split('\n')[3]); // the same "Rendered at" line
  });

  it('answers each visitor with their own state only, through /state and the ESI fragment', async () => {
    const alice = createCookieJar();
    const bob = createCookieJar();
    const stored = await browse(alice, '/state', { json: { city: 'Lyon' } });
    expect(stored.json<StateReply>().geo).toEqual({ city: 'Lyon' });
    expect((await browse(bob, '/state?set=Oslo')).json<StateReply>().geo).toEqual({ city: 'Oslo' });
    expect(alice.get('vsid')).not.toBe(bob.get('vsid'));

    for (let round = 0; round < 3; round++) {
      const forAlice = await browse(alice, '/state');
      const forBob = await browse(bob, '/state');
      const forNobody = await get('/state');
      expect(forAlice.json<StateReply>().geo).toEqual({ city: 'Lyon' });
      expect(forBob.json<StateReply>().geo).toEqual({ city: 'Oslo' });
      expect(forNobody.json<StateReply>().geo).toBeNull();
      for (const reply of [forAlice, forBob, forNobody]) {
        expect(reply.headers['x-cache']).toBe('PASS');
        expect(reply.headers['cache-control']).toBe('private');
      }
    }

    // The article is one cached object; Varnish fills its ESI tag per request, with that visitor's cookie.
    const pageForAlice = await browse(alice, '/articles/2');
    const pageForBob = await browse(bob, '/articles/2');
    const pageForNobody = await get('/articles/2');
    expect(pageForBob.headers['x-cache']).toBe('HIT');
    expect(pageForNobody.headers['x-cache']).toBe('HIT');
    expect(pageForAlice.body).toContain('Your city: Lyon');
    expect(pageForAlice.body).not.toContain('Oslo');
    expect(pageForBob.body).toContain('Your city: Oslo');
    expect(pageForBob.body).not.toContain('Lyon');
    expect(pageForNobody.body).toContain('Your city: none yet');
  });

  it('lets only the visitor cookie and the cookie-storage chunks through to the app', async () => {
    const jar = createCookieJar();
    await browse(jar, '/state?theme=dark');
    expect(jar.get('vs_data.0')).toBeDefined();
    jar.set('_ga', 'GA1.2.3.4');
    jar.set('session', 'not-for-this-app');

    const reply = (await browse(jar, '/state')).json<StateReply>();
    expect(reply.theme).toBe('dark');
    expect(reply.cookies.sort()).toEqual(['vs_data.0', 'vsid']);
  });

  it('never stores a response that sets a cookie or is private', async () => {
    for (const path of ['/mistake/set-cookie', '/mistake/private']) {
      const first = await get(path);
      const second = await get(path, { headers: { cookie: 'vsid=mine' } });
      expect(second.headers['x-cache']).not.toBe('HIT');
      // The backend answered both: nothing was kept for the second client.
      expect([first.body, second.body]).toEqual(['answer 1', 'answer 2']);
    }
    // Every response of this file that Varnish took from its cache; this test's own include a
    // new visitor's first /state and a public page a known visitor asked for.
    const visitor = cookiePair((await get('/state')).setCookies, 'vsid') ?? '';
    await get('/articles/5');
    await get('/articles/5', { headers: { cookie: visitor } });
    const hits = served.filter((reply) => reply.xCache === 'HIT');
    expect(hits.length).toBeGreaterThan(0);
    expect(hits.filter((reply) => reply.setCookies.length > 0)).toEqual([]);
    expect(served.some((reply) => reply.setCookies.length > 0)).toBe(true);
  });

  it('tells the app the address Varnish saw, whatever X-Forwarded-For the client sends', async () => {
    const ip = async (headers: Record<string, string>, localAddress?: string) => {
      const reply = await get('/state', localAddress === undefined ? { headers } : { headers, localAddress });
      return reply.json<StateReply>().clientIp;
    };
    expect(await ip({})).toBe('127.0.0.1');
    // Another loopback address, so that the client is told apart from Varnish's own connection.
    expect(await ip({}, '127.0.0.2')).toBe('127.0.0.2');
    expect(await ip({ 'x-forwarded-for': '203.0.113.9' }, '127.0.0.2')).toBe('127.0.0.2');
    expect(await ip({ 'x-forwarded-for': '203.0.113.9, 127.0.0.1' }, '127.0.0.2')).toBe('127.0.0.2');
    expect(await ip({ 'x-forwarded-for': '127.0.0.1' }, '127.0.0.2')).toBe('127.0.0.2');
    expect(await ip({ forwarded: 'for=203.0.113.9' }, '127.0.0.2')).toBe('127.0.0.2');
  });

  it('does not let a client claim https: the visitor cookie over plain HTTP is not Secure', async () => {
    const reply = await get('/state', { headers: { 'x-forwarded-proto': 'https' } });
    const line = reply.setCookies.find((cookie) => cookie.startsWith('vsid='));
    expect(line).toBeDefined();
    expect(line).not.toMatch(/;\s*Secure/i);
  });
});

describe('the cookies the VCL keeps', () => {
  it('are the ones the library names for the same options', async () => {
    const { createVisitorState } = await import('../../src/index.js');
    const visitors = createVisitorState({
      secret: 'varnish-example-secret-not-for-production-use',
      bins: { 'ui:*': { store: 'cookie:' } },
    });
    const vcl = await readFile(fileURLToPath(new URL('../../examples/varnish/default.vcl', import.meta.url)), 'utf8');
    const kept = /cookie\.keep_re\("([^"]+)"\)/.exec(vcl)?.[1]?.replaceAll('\\\\', '\\');
    expect(visitors.cacheCookies.names).toEqual(['vsid', 'vs_data.*']);
    expect(kept).toBe(visitors.cacheCookies.pattern);
    expect(new RegExp(visitors.cacheCookies.pattern).test('vs_data.12')).toBe(true);
    expect(new RegExp(visitors.cacheCookies.pattern).test('_ga')).toBe(false);
    await visitors.close();
  });
});
