import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createKeyRing, randomId } from '../../src/crypto.js';
import { createVisitorState, type VisitorState } from '../../src/index.js';
import { openStorage } from '../../src/state/registry.js';
import type { Storage } from '../../src/state/storage.js';
import { send, serve, type TestServer } from '../helpers/http.js';
import { freePort } from '../helpers/services.js';
import { builtBin, type CliResult, cli } from './bin.js';

// Each case starts node once or more: seconds apiece on a busy machine.
vi.setConfig({ testTimeout: 90_000 });

const SECRET = 'the application secret, long enough for production';
const dir = await mkdtemp(join(tmpdir(), 'visitor-state-cli-commands-'));
const store = `sqlite://${join(dir, 'state.sqlite')}`;
const namespace = `vs-cli-${randomId().slice(0, 10)}`;
const base = ['--store', store, '--namespace', namespace];

let visitors: VisitorState;
let app: TestServer;
let storage: Storage;

/** One line on standard error, and no stack trace. */
function oneLine(run: CliResult) {
  const lines = run.stderr.trimEnd().split('\n');
  expect(lines, run.stderr).toHaveLength(1);
  expect(run.stderr).toMatch(/^visitor-state: /);
  expect(run.stderr).not.toMatch(/\n\s+at /);
}

/** A visitor made by the application: two bins, and linked to `user` the way a login links it. */
async function visitorOf(user: string): Promise<string> {
  const reply = await send(`${app.url}/login?user=${encodeURIComponent(user)}`);
  expect(reply.status).toBe(200);
  return reply.body;
}

const linkSlot = (user: string) => `L${createKeyRing([SECRET]).mac('link', user, 16)}`;

beforeAll(async () => {
  await builtBin();
  visitors = createVisitorState({ secret: SECRET, store, namespace });
  app = await serve(async (req, res) => {
    const user = new URL(req.url ?? '/', 'http://x').searchParams.get('user') ?? '';
    const visitor = await visitors.resolve(req, res);
    await visitor.cache.set('geo:city', { city: 'Lyon' }, { ttl: '2h' });
    await visitor.cache.set('ui:theme', 'dark');
    await visitor.link(user);
    res.end(visitor.id);
  });
  storage = (await openStorage(store, { namespace, maxEntries: 1_000, report: () => {} })) as Storage;
}, 180_000);

afterAll(async () => {
  await app?.close();
  await visitors?.close();
  await storage?.close?.();
  await rm(dir, { recursive: true, force: true });
});

describe('export', () => {
  it("prints the visitor's bins with their expiry as JSON", async () => {
    const id = await visitorOf('ada');
    const run = await cli(['export', ...base, '--visitor', id]);
    expect(run.status, run.stderr).toBe(0);
    const exported = JSON.parse(run.stdout) as {
      visitor: string;
      bins: { bin: string; data: unknown; expiresAt: string }[];
      links: number;
    };
    expect(exported.visitor).toBe(id);
    expect(exported.bins.map(({ bin, data }) => ({ bin, data }))).toEqual([
      { bin: 'geo:city', data: { city: 'Lyon' } },
      { bin: 'ui:theme', data: 'dark' },
    ]);
    const inTwoHours = Date.now() + 2 * 3_600_000;
    expect(Math.abs(Date.parse(exported.bins[0]?.expiresAt ?? '') - inTwoHours)).toBeLessThan(600_000);
    expect(exported.links).toBe(1);
  });
});

describe('an ID that starts with a dash', () => {
  // One visitor ID in 64 starts with '-': base64url. It is a value, not an option.
  it('is taken as the value of --visitor and --user, for export and forget', async () => {
    const id = `-${randomId().slice(1)}`;
    await storage.set(id, 'geo:city', { city: 'Oslo' }, 60_000);
    const exported = await cli(['export', ...base, '--visitor', id]);
    expect(exported.status, exported.stderr).toBe(0);
    expect(JSON.parse(exported.stdout)).toMatchObject({
      visitor: id,
      bins: [{ bin: 'geo:city', data: { city: 'Oslo' } }],
    });
    const forgot = await cli(['forget', '--visitor', id, ...base]);
    expect(forgot.status, forgot.stderr).toBe(0);
    expect(await storage.entries!(id)).toEqual([]);

    const linked = await visitorOf('-1');
    const byUser = await cli(['forget', ...base, '--user', '-1'], { VISITOR_STATE_SECRET: SECRET });
    expect(byUser.status, byUser.stderr).toBe(0);
    expect(byUser.stdout).toContain(`forgot visitor ${linked}`);
  });

  it('still leaves an option that follows a value-taking option an option', async () => {
    const run = await cli(['export', '--store', '--namespace', namespace, '--visitor', 'x']);
    expect(run.status, run.stderr).toBe(2);
    oneLine(run);
  });
});

describe('stats', () => {
  it('counts visitors, bins and bytes as JSON', async () => {
    const ns = `vs-cli-${randomId().slice(0, 10)}`;
    const own = (await openStorage(store, { namespace: ns, maxEntries: 1_000, report: () => {} })) as Storage;
    await own.set('a', 'x:one', { n: 1 }, 60_000);
    await own.set('a', 'x:two', 'hello', 60_000);
    await own.set('b', 'x:one', [1, 2, 3], 60_000);
    await own.close?.();
    const run = await cli(['stats', '--store', store, '--namespace', ns, '--json']);
    expect(run.status, run.stderr).toBe(0);
    const bytes = ['{"n":1}', '"hello"', '[1,2,3]'].reduce((sum, json) => sum + json.length, 0);
    expect(JSON.parse(run.stdout)).toEqual({ visitors: 2, bins: 3, bytes });
  });
});

describe('forget', () => {
  it('--visitor erases every bin of the visitor and the link that points at it, and nothing else', async () => {
    const id = await visitorOf('grace');
    const other = await visitorOf('linus');
    const run = await cli(['forget', ...base, '--visitor', id]);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain(`forgot visitor ${id}: 2 bins, 1 links`);
    expect(await storage.entries!(id)).toEqual([]);
    expect(await storage.get(linkSlot('grace'), '@link')).toBeUndefined();
    expect(await storage.get(other, 'geo:city')).toEqual({ city: 'Lyon' });
    expect(await storage.get(linkSlot('linus'), '@link')).toBe(other);
  });

  it('--user finds the visitor through its link with the secret, and erases it', async () => {
    const id = await visitorOf('4711');
    const run = await cli(['forget', ...base, '--user', '4711'], { VISITOR_STATE_SECRET: SECRET });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain(`forgot visitor ${id}: 2 bins`);
    expect(await storage.entries!(id)).toEqual([]);
    expect(await storage.get(linkSlot('4711'), '@link')).toBeUndefined();
  });

  it('--user without VISITOR_STATE_SECRET is a usage error in one line', async () => {
    const run = await cli(['forget', ...base, '--user', '4711']);
    expect(run.status, run.stderr).toBe(2);
    oneLine(run);
    expect(run.stderr).toContain('VISITOR_STATE_SECRET');
  });
});

describe('sweep', () => {
  it('removes expired entries and prints how many', async () => {
    const ns = `vs-cli-${randomId().slice(0, 10)}`;
    const own = (await openStorage(store, { namespace: ns, maxEntries: 1_000, report: () => {} })) as Storage;
    await own.set('a', 'x:short', 1, 1);
    await own.set('b', 'x:short', 2, 1);
    await own.set('b', 'x:long', 3, 60_000);
    await own.close?.();
    await new Promise((r) => setTimeout(r, 20));
    const run = await cli(['sweep', '--store', store, '--namespace', ns]);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout.trim()).toBe('removed 2 expired entries');
  });
});

describe('failures and usage', () => {
  let hung: Server | undefined;
  afterAll(() => hung?.close());

  it('answers --help on the command and each subcommand', async () => {
    const top = await cli(['--help']);
    expect(top.status, top.stderr).toBe(0);
    expect(top.stdout).toMatch(/^Usage: visitor-state <command>/);
    for (const command of ['stats', 'migrate', 'export', 'forget', 'sweep']) {
      const run = await cli([command, '--help']);
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toMatch(new RegExp(`^Usage: visitor-state ${command} `));
    }
  });

  it('a bad URL is a usage error in one line', async () => {
    const run = await cli(['stats', '--store', 'not a url']);
    expect(run.status, run.stderr).toBe(2);
    oneLine(run);
  });

  it('an unknown scheme fails in one line that names the known ones', async () => {
    const run = await cli(['stats', '--store', 'mongodb://127.0.0.1/x']);
    expect(run.status, run.stderr).toBe(1);
    oneLine(run);
    expect(run.stderr).toContain("'redis:'");
  });

  it('an unreachable store fails in one line that names the cause', async () => {
    const port = await freePort();
    const run = await cli(['stats', '--store', `redis://127.0.0.1:${port}`], { VISITOR_STATE_TIMEOUT: '3s' });
    expect(run.status, run.stderr).toBe(1);
    oneLine(run);
    expect(run.stderr).toMatch(/ECONNREFUSED|did not answer/);
  });

  it('a store that accepts connections and never answers ends the command instead of hanging it', async () => {
    hung = createServer(() => {}).listen(0, '127.0.0.1');
    await new Promise((r) => hung?.once('listening', r));
    const { port } = hung.address() as { port: number };
    const run = await cli(['stats', '--store', `redis://127.0.0.1:${port}`], { VISITOR_STATE_TIMEOUT: '1s' });
    expect(run.status, run.stderr).toBe(1);
    oneLine(run);
    expect(run.stderr).toContain('did not answer');
  });

  it('a store that cannot list its visitors says so in one line', async () => {
    const bin = await builtBin();
    const register = pathToFileURL(join(import.meta.dirname, 'fixtures/register-plain-storage.mjs')).href;
    const run = await cli(['stats', '--store', 'plain://x'], {
      NODE_OPTIONS: `--import ${register}`,
      VISITOR_STATE_TEST_DIST: pathToFileURL(`${dirname(dirname(bin))}/`).href,
    });
    expect(run.status, run.stderr).toBe(1);
    oneLine(run);
    expect(run.stderr).toContain('cannot list its visitors');
  });

  it('an unknown option or a missing one is a usage error', async () => {
    for (const args of [['stats', '--stor', store], ['export', ...base], ['forget', ...base], ['frobnicate']]) {
      const run = await cli(args);
      expect(run.status, args.join(' ')).toBe(2);
      oneLine(run);
    }
  });
});
