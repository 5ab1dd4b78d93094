import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  ConfigError,
  cookieResolver,
  createVisitorState,
  fingerprintResolver,
  type Storage,
  StorageError,
  type VisitorStateError,
  type VisitorStateOptions,
} from '../../src/index.js';
import { type CookieJar, createCookieJar } from '../helpers/cookie-jar.js';
import { serve } from '../helpers/http.js';
import {
  DATABASE_URL,
  freePort,
  needPostgres,
  needRedisServer,
  privateRedis,
  type RedisProcess,
} from '../helpers/services.js';

// No process-wide unhandledRejection listener here on purpose: vitest fails the run on one.

const SECRET = 'faults-test-secret-0123456789abcdefghij';
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const dir = await mkdtemp(join(tmpdir(), 'visitor-state-faults-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** What the app answers: what it read (`null` for nothing), and what its write resolved to. */
interface Answer {
  readonly id: string;
  readonly read: unknown;
  readonly wrote: boolean | null;
}

interface App {
  readonly url: string;
  readonly errors: VisitorStateError[];
  readonly visitors: ReturnType<typeof createVisitorState>;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/**
 * A node:http app that reads bin `?get=` and, when `?set=` is given, writes `?value=` to
 * it, as the README's handlers do: without a try/catch. A store failure must not make it
 * a 500 or crash the process; anything that rejects would.
 */
async function startApp(options: VisitorStateOptions): Promise<App> {
  const errors: VisitorStateError[] = [];
  const visitors = createVisitorState({ secret: SECRET, onError: (error) => errors.push(error), ...options });
  const server = await serve(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://app');
    const visitor = await visitors.resolve(req, res);
    const set = url.searchParams.get('set');
    const wrote = set === null ? null : await visitor.cache.set(set, url.searchParams.get('value'));
    const read = await visitor.cache.get(url.searchParams.get('get') ?? 'mymod:none');
    const answer: Answer = { id: visitor.id, read: read ?? null, wrote };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer));
  });
  closers.push(async () => {
    await server.close();
    await visitors.close();
  });
  return { url: server.url, errors, visitors };
}

const ask = async (jar: CookieJar, app: App, query: string) => {
  const reply = await jar.request(`${app.url}/?${query}`);
  expect(reply.status).toBe(200);
  return reply.json<Answer>();
};

const redisServer = await needRedisServer();
const postgresUp = await needPostgres();

describe.runIf(redisServer)('a Redis that stops in the middle of a run of requests', () => {
  let redis: RedisProcess;
  beforeAll(async () => {
    redis = await privateRedis(dir);
  });
  afterAll(() => redis.stop());

  it('never crashes, reads undefined and reports every failure while it is down, and recovers by itself', async () => {
    const app = await startApp({ store: redis.url });
    const clients = Array.from({ length: 4 }, () => createCookieJar());
    for (const jar of clients)
      expect((await ask(jar, app, 'set=mymod:first&value=kept&get=mymod:first')).wrote).toBe(true);

    const ROUNDS = 50; // of one request per client, in parallel: 200 requests
    const STOP = 15;
    const START = 35;
    let failedSets = 0;
    let getsWhileDown = 0;
    // Requests after the restart whose write failed: their read may have failed too.
    let failedAfterStart = 0;
    for (let round = 0; round < ROUNDS; round++) {
      if (round === STOP) await redis.stop();
      if (round === START) await redis.start();
      const down = round >= STOP && round < START;
      const answers = await Promise.all(
        clients.map((jar, i) => ask(jar, app, `set=mymod:r${round}&value=${round}-${i}&get=mymod:first`)),
      );
      for (const answer of answers) {
        if (answer.wrote === false) {
          failedSets++;
          if (round >= START) failedAfterStart++;
        }
        if (round < STOP) expect(answer).toMatchObject({ wrote: true, read: 'kept' });
        if (down) {
          getsWhileDown++;
          expect(answer).toMatchObject({ wrote: false, read: null });
        }
      }
    }
    expect(getsWhileDown).toBe((START - STOP) * clients.length);

    // Service comes back without restarting the app: a set and get round trip works again.
    let back: Answer | undefined;
    for (let attempt = 0; attempt < 100 && !back?.wrote; attempt++) {
      back = await ask(clients[0] as CookieJar, app, 'set=mymod:back&value=yes&get=mymod:back');
      if (back.wrote === false) {
        failedSets++;
        failedAfterStart++;
        await sleep(100);
      }
    }
    expect(back).toMatchObject({ wrote: true, read: 'yes' });
    expect((await ask(clients[1] as CookieJar, app, 'set=mymod:again&value=1&get=mymod:again')).read).toBe('1');

    // Every failure went to onError, typed: one StorageError per failed operation, and one for the outage.
    expect(app.errors.every((error) => error instanceof StorageError)).toBe(true);
    const failedTo = (what: string) =>
      app.errors.filter(
        (error) =>
          error.message.endsWith(`failed to ${what}`) || error.message.includes(`did not answer ${what} within`),
      ).length;
    expect(failedTo('set')).toBe(failedSets);
    expect(failedTo('get')).toBeGreaterThanOrEqual(getsWhileDown);
    expect(failedTo('get')).toBeLessThanOrEqual(getsWhileDown + failedAfterStart);
    expect(app.errors.filter((error) => error.message.includes('connection failed'))).toHaveLength(1);
    expect(app.errors).toHaveLength(failedTo('set') + failedTo('get') + 1);
  });
});

describe('a store that hangs', () => {
  const hanging: Storage = {
    get: () => new Promise(() => {}),
    set: () => new Promise(() => {}),
    delete: () => new Promise(() => {}),
  };

  it('makes get resolve undefined and set resolve false after the timeout, and reports both', async () => {
    const app = await startApp({ store: hanging, timeout: 100 });
    const jar = createCookieJar();
    const answer = await ask(jar, app, 'set=mymod:geo&value=Lyon&get=mymod:geo');
    expect(answer.read).toBeNull();
    expect(answer.wrote).toBe(false);
    expect(app.errors.map((error) => [error.name, error.message])).toEqual([
      ['StorageError', 'store custom storage did not answer set within 100 ms'],
      ['StorageError', 'store custom storage did not answer get within 100 ms'],
    ]);
  });
});

describe('a custom storage that fails', () => {
  const disk = new Error('disk full');
  const throwing: Storage = {
    get() {
      throw disk;
    },
    set() {
      throw disk;
    },
    delete() {
      throw disk;
    },
  };
  const rejecting: Storage = {
    get: () => Promise.reject(disk),
    set: () => Promise.reject(disk),
    delete: () => Promise.reject(disk),
  };

  it.each([
    ['throws synchronously', throwing],
    ['rejects', rejecting],
  ])('is reported and typed as a StorageError with the cause when it %s', async (_how, store) => {
    const app = await startApp({ store });
    const jar = createCookieJar();
    const answer = await ask(jar, app, 'set=mymod:geo&value=Lyon&get=mymod:geo');
    expect(answer).toMatchObject({ read: null, wrote: false });
    expect(app.errors).toHaveLength(2);
    for (const error of app.errors) {
      expect(error).toBeInstanceOf(StorageError);
      expect(error.cause).toBe(disk);
    }
    expect(app.errors.map((error) => error.message)).toEqual([
      'store custom storage failed to set',
      'store custom storage failed to get',
    ]);
  });
});

describe('a failing store behind the fingerprint resolver', () => {
  it('answers a cookie-less first visit that writes with wrote: false, not a 500', async () => {
    const disk = new Error('disk full');
    const store: Storage = {
      get: () => Promise.reject(disk),
      set: () => Promise.reject(disk),
      delete: () => Promise.reject(disk),
    };
    const app = await startApp({ store, resolvers: [cookieResolver(), fingerprintResolver()] });
    const answer = await ask(createCookieJar(), app, 'set=mymod:geo&value=Lyon&get=mymod:geo');
    expect(answer).toMatchObject({ read: null, wrote: false });
    expect(app.errors.length).toBeGreaterThan(0);
    for (const error of app.errors) expect(error).toBeInstanceOf(StorageError);
  });
});

describe('a SQLite path that cannot be opened', () => {
  it('fails ready() with a ConfigError while requests still answer', async () => {
    // A file where the folder should be: neither the folder nor the database can be made.
    const blocker = join(dir, 'not-a-folder');
    await writeFile(blocker, 'a file');
    const app = await startApp({ store: `sqlite://${join(blocker, 'state.sqlite')}` });

    const ready = await app.visitors.ready().catch((error: unknown) => error);
    expect(ready).toBeInstanceOf(ConfigError);
    expect((ready as Error).message).toMatch(/not-a-folder.*check the path/);

    const jar = createCookieJar();
    for (let i = 0; i < 3; i++) {
      const answer = await ask(jar, app, 'set=mymod:geo&value=Lyon&get=mymod:geo');
      expect(answer).toMatchObject({ read: null, wrote: false });
    }
    expect(app.errors).toHaveLength(6);
    for (const error of app.errors) {
      expect(error).toBeInstanceOf(StorageError);
      expect(error.message).toContain((ready as Error).message);
      expect(error.cause).toBe(ready);
    }
  });
});

describe('a Redis on a closed port', () => {
  it('costs a node:http handler that calls set without catching only its state: 200s, and onError hears each failure', async () => {
    const port = await freePort();
    const app = await startApp({ store: `redis://127.0.0.1:${port}`, timeout: 200 });
    const jar = createCookieJar();
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await ask(jar, app, `set=mymod:n&value=${i}&get=mymod:n`));
    expect(answers.map((answer) => [answer.wrote, answer.read])).toEqual(answers.map(() => [false, null]));
    const failed = (what: string) =>
      app.errors.filter((error) => error instanceof StorageError && error.message.includes(what)).length;
    expect(failed('set')).toBe(5);
    expect(failed('get')).toBe(5);
  });
});

describe('the default onError line', () => {
  const warned = async (store: string, timeout: number) => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, 'warn').mockImplementation((line: unknown) => {
      lines.push(String(line));
    });
    try {
      const visitors = createVisitorState({ secret: SECRET, store, timeout });
      const visitor = await visitors.resolve({ headers: {} });
      expect(await visitor.cache.set('mymod:geo', 'Lyon')).toBe(false);
      await visitors.close();
    } finally {
      spy.mockRestore();
    }
    return lines.filter((line) => line.startsWith('visitor-state: ERR_VISITOR_STATE_STORAGE'));
  };

  it('names the cause of a refused connection', async () => {
    const lines = await warned(`redis://127.0.0.1:${await freePort()}`, 300);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.some((line) => line.includes('ECONNREFUSED'))).toBe(true);
  });

  it.runIf(postgresUp)('names the cause of a PostgreSQL refusal', async () => {
    const url = new URL(DATABASE_URL);
    url.username = 'no_such_role_vs';
    const lines = await warned(url.href, 2_000);
    expect(lines.some((line) => line.includes('role "no_such_role_vs" does not exist'))).toBe(true);
  });
});
