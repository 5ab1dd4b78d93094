import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import KeyvRedis from '@keyv/redis';
import { createClient } from '@redis/client';
import { sealData, unsealData } from 'iron-session';
import Keyv from 'keyv';
import pg from 'pg';
import type { ResponseView, Storage, StorageOptions } from '../src/index.js';
import { canConnect, DATABASE_URL, REDIS_URL } from '../test/helpers/services.js';
import { fakeResponse, load, measuredCode } from './library.js';
import {
  type Case,
  check,
  compare,
  type Figure,
  heading,
  measure,
  sink,
  skip,
  summary,
  type Target,
} from './report.js';

const lib = await load<typeof import('../src/index.js')>('index');
const { sqliteStorage } = await load<typeof import('../src/state/sqlite-storage.js')>('state/sqlite-storage');
const { sqliteDriver } = await load<typeof import('../src/state/sqlite-driver.js')>('state/sqlite-driver');
const { redisStorage } = await load<typeof import('../src/state/redis-storage.js')>('state/redis-storage');
const { postgresStorage } = await load<typeof import('../src/state/postgres-storage.js')>('state/postgres-storage');
const { guardStorage } = await load<typeof import('../src/state/guard.js')>('state/guard');
const { scripts } = await load<typeof import('../src/state/redis-scripts.js')>('state/redis-scripts');

const SECRET = 'bench-secret-4b1c7e0d9a2f48e6b3c5d7e9f1a3b5c7';
// One namespace per run: nothing collides with tests or another run, and cleanup knows what is ours.
const NAMESPACE = `bench_${process.pid}_${Date.now().toString(36)}`;
const VISITOR = 'benchVisitor0000000001';
const TTL_MS = 3_600_000;
const IN_FLIGHT = 50;
const BINS = Array.from({ length: IN_FLIGHT }, (_, i) => `bench:b${i}`);
const TIME_MS = 800;

const storageOptions: StorageOptions = {
  namespace: NAMESPACE,
  maxEntries: 100_000,
  report: (error) => console.warn(`storage reported: ${String(error)}`),
};

// A typical small bin, about 70 bytes of JSON; `n` varies it, since a database may skip a write of identical bytes.
const binValue = (n: number) => ({ city: 'Lyon', country: 'FR', visits: n, tags: ['news', 'sport'], consent: true });
let counter = 0;
const nextValue = () => binValue(counter++);

const binAt = (i: number) => BINS[i % IN_FLIGHT] as string;

/** The same operations, through a storage and through the raw client of its store. */
interface Pair {
  readonly name: string;
  readonly storage: Storage;
  readonly rawName: string;
  readonly raw: { get(bin: string): Promise<unknown>; set(bin: string, data: unknown): Promise<unknown> };
  /** Sequential operations per timed sample. */
  readonly perSample: number;
}

/** get and set, one at a time and fifty at once, through the storage and the raw client. */
function pairCases(pair: Pair): Case[] {
  const { storage, raw, perSample } = pair;
  return [
    {
      label: `${pair.name} get, 1 in flight`,
      ops: perSample,
      run: async () => {
        for (let i = 0; i < perSample; i++) sink.value = await storage.get(VISITOR, binAt(i));
      },
    },
    {
      label: `${pair.rawName} get, 1 in flight`,
      ops: perSample,
      run: async () => {
        for (let i = 0; i < perSample; i++) sink.value = await raw.get(binAt(i));
      },
    },
    {
      label: `${pair.name} get, ${IN_FLIGHT} in flight`,
      ops: IN_FLIGHT,
      run: async () => {
        sink.value = await Promise.all(BINS.map((bin) => storage.get(VISITOR, bin)));
      },
    },
    {
      label: `${pair.rawName} get, ${IN_FLIGHT} in flight`,
      ops: IN_FLIGHT,
      run: async () => {
        sink.value = await Promise.all(BINS.map((bin) => raw.get(bin)));
      },
    },
    {
      label: `${pair.name} set, 1 in flight`,
      ops: perSample,
      run: async () => {
        for (let i = 0; i < perSample; i++) await storage.set(VISITOR, binAt(i), nextValue(), TTL_MS);
      },
    },
    {
      label: `${pair.rawName} set, 1 in flight`,
      ops: perSample,
      run: async () => {
        for (let i = 0; i < perSample; i++) await raw.set(binAt(i), nextValue());
      },
    },
    {
      label: `${pair.name} set, ${IN_FLIGHT} in flight`,
      ops: IN_FLIGHT,
      run: async () => {
        await Promise.all(BINS.map((bin) => storage.set(VISITOR, bin, nextValue(), TTL_MS)));
      },
    },
    {
      label: `${pair.rawName} set, ${IN_FLIGHT} in flight`,
      ops: IN_FLIGHT,
      run: async () => {
        await Promise.all(BINS.map((bin) => raw.set(bin, nextValue())));
      },
    },
  ];
}

/** Prints the eight figures of {@link pairCases}, in its order. */
function comparePair(figures: Figure[], targets: { get1?: Target; get50?: Target } = {}): void {
  const [get1, rawGet1, get50, rawGet50, set1, rawSet1, set50, rawSet50] = figures as [Figure, ...Figure[]];
  if (!rawGet1 || !get50 || !rawGet50 || !set1 || !rawSet1 || !set50 || !rawSet50) throw new Error('missing figures');
  compare(get1, rawGet1, targets.get1 ? { target: targets.get1 } : {});
  compare(get50, rawGet50, targets.get50 ? { by: 'rate', target: targets.get50 } : { by: 'rate' });
  compare(set1, rawSet1);
  compare(set50, rawSet50, { by: 'rate' });
}

/** Fails the run when a storage and its raw client do not read the same data: both must do the real work. */
async function expectSameData(pair: Pair): Promise<void> {
  for (const [i, bin] of BINS.entries()) await pair.storage.set(VISITOR, bin, binValue(i), TTL_MS);
  const ours = JSON.stringify(await pair.storage.get(VISITOR, binAt(7)));
  const theirs = JSON.stringify(await pair.raw.get(binAt(7)));
  if (ours === undefined || ours !== theirs || ours !== JSON.stringify(binValue(7))) {
    throw new Error(`${pair.name} and ${pair.rawName} read different data: ${ours} / ${theirs}`);
  }
}

async function memoryPart(): Promise<void> {
  const storage = lib.memoryStorage({ maxEntries: 100_000 });
  const keys = BINS.map((bin) => `${VISITOR}:${bin}`);
  const keyAt = (i: number) => keys[i % IN_FLIGHT] as string;
  const objects = new Map<string, unknown>();
  const texts = new Map<string, string>();
  for (const [i, key] of keys.entries()) {
    objects.set(key, binValue(i));
    texts.set(key, JSON.stringify(binValue(i)));
    await storage.set(VISITOR, BINS[i] as string, binValue(i), TTL_MS);
  }
  const getObject = async (key: string): Promise<unknown> => objects.get(key);
  // What the storage does besides its bookkeeping: a lookup and a fresh copy, behind a promise.
  const getText = async (key: string): Promise<unknown> => {
    const text = texts.get(key);
    return text === undefined ? undefined : JSON.parse(text);
  };
  const setText = async (key: string, data: unknown): Promise<void> => {
    texts.set(key, JSON.stringify(data));
  };
  const per = 100;
  const figures = await measure(
    [
      {
        label: 'memory storage get, 1 in flight',
        ops: per,
        run: async () => {
          for (let i = 0; i < per; i++) sink.value = await storage.get(VISITOR, binAt(i));
        },
      },
      {
        label: 'Map.get',
        ops: per,
        run: () => {
          for (let i = 0; i < per; i++) sink.value = objects.get(keyAt(i));
        },
      },
      {
        label: 'memory storage peek (synchronous, a copy)',
        ops: per,
        run: () => {
          for (let i = 0; i < per; i++) sink.value = storage.peek?.(VISITOR, binAt(i));
        },
      },
      {
        label: 'async Map.get (a promise, no copy)',
        ops: per,
        run: async () => {
          for (let i = 0; i < per; i++) sink.value = await getObject(keyAt(i));
        },
      },
      {
        label: 'async Map<string,string>.get + JSON.parse',
        ops: per,
        run: async () => {
          for (let i = 0; i < per; i++) sink.value = await getText(keyAt(i));
        },
      },
      {
        label: `memory storage get, ${IN_FLIGHT} in flight`,
        ops: IN_FLIGHT,
        run: async () => {
          sink.value = await Promise.all(BINS.map((bin) => storage.get(VISITOR, bin)));
        },
      },
      {
        label: `Map.get x${IN_FLIGHT}`,
        ops: IN_FLIGHT,
        run: () => {
          for (const key of keys) sink.value = objects.get(key);
        },
      },
      {
        label: `${IN_FLIGHT} async Map.get + JSON.parse at once`,
        ops: IN_FLIGHT,
        run: async () => {
          sink.value = await Promise.all(keys.map(getText));
        },
      },
      {
        label: 'memory storage set, 1 in flight',
        ops: per,
        run: async () => {
          for (let i = 0; i < per; i++) await storage.set(VISITOR, binAt(i), nextValue(), TTL_MS);
        },
      },
      {
        label: 'Map.set',
        ops: per,
        run: () => {
          for (let i = 0; i < per; i++) objects.set(keyAt(i), nextValue());
        },
      },
      {
        label: 'async JSON.stringify + Map<string,string>.set',
        ops: per,
        run: async () => {
          for (let i = 0; i < per; i++) await setText(keyAt(i), nextValue());
        },
      },
    ],
    { timeMs: 600 },
  );
  const [get1, mapGet, peek, asyncGet, jsonGet, get50, mapGet50, jsonGet50, set1, mapSet, jsonSet] = figures;
  if (
    !get1 ||
    !mapGet ||
    !peek ||
    !asyncGet ||
    !jsonGet ||
    !get50 ||
    !mapGet50 ||
    !jsonGet50 ||
    !set1 ||
    !mapSet ||
    !jsonSet
  ) {
    throw new Error('missing figures');
  }
  heading('memory storage (memoryStorage) against a Map');
  compare(get1, mapGet, { target: { atMost: 3 } });
  compare(peek, mapGet);
  compare(get1, asyncGet);
  compare(get1, jsonGet);
  compare(get50, mapGet50, { by: 'rate' });
  compare(get50, jsonGet50, { by: 'rate' });
  compare(set1, mapSet);
  compare(set1, jsonSet);
  await storage.close?.();
}

const SQLITE_GET = 'SELECT value FROM visitor_state WHERE ns = ? AND visitor = ? AND bin = ? AND expires > ?';
const SQLITE_SET = `INSERT INTO visitor_state (ns, visitor, bin, value, expires) VALUES (?, ?, ?, ?, ?)
  ON CONFLICT (ns, visitor, bin) DO UPDATE SET value = excluded.value, expires = excluded.expires`;

type SqliteDatabase = import('../src/state/sqlite-driver.js').SqliteDatabase;

/** get and set through prepared statements of a connection of our own to the storage's file, set up as the storage sets up its own. */
function preparedSqlite(db: SqliteDatabase): Pair['raw'] {
  db.exec('PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL');
  const select = db.prepare(SQLITE_GET);
  const upsert = db.prepare(SQLITE_SET);
  return {
    get: async (bin) => {
      const row = select.get(NAMESPACE, VISITOR, bin, Date.now()) as { value: string } | undefined;
      return row === undefined ? undefined : JSON.parse(row.value);
    },
    set: async (bin, data) => upsert.run(NAMESPACE, VISITOR, bin, JSON.stringify(data), Date.now() + TTL_MS),
  };
}

/** `node:sqlite`, where this runtime has it without a flag. */
function nodeSqlite(): { DatabaseSync: new (file: string) => SqliteDatabase } | undefined {
  try {
    return process.getBuiltinModule?.('node:sqlite') as { DatabaseSync: new (file: string) => SqliteDatabase };
  } catch {
    return undefined;
  }
}

async function sqlitePart(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vs-bench-'));
  const file = join(dir, 'bench.sqlite');
  const url = new URL(`sqlite://${file}`);
  const opened: SqliteDatabase[] = [];
  let storage: Storage | undefined;
  try {
    storage = await sqliteStorage(url, storageOptions);
    const driver = await sqliteDriver(url);
    const own = driver.open(file);
    opened.push(own);
    const pair: Pair = {
      name: `sqlite storage (${driver.name})`,
      storage,
      rawName: `prepared ${driver.name} statement`,
      perSample: 10,
      raw: preparedSqlite(own),
    };
    await expectSameData(pair);
    const builtIn = driver.name === 'node:sqlite' ? undefined : nodeSqlite();
    const extra: Case[] = [];
    if (builtIn) {
      const db = new builtIn.DatabaseSync(file);
      opened.push(db);
      const raw = preparedSqlite(db);
      extra.push(
        {
          label: 'prepared node:sqlite statement get, 1 in flight',
          ops: 10,
          run: async () => {
            for (let i = 0; i < 10; i++) sink.value = await raw.get(binAt(i));
          },
        },
        {
          label: 'prepared node:sqlite statement set, 1 in flight',
          ops: 10,
          run: async () => {
            for (let i = 0; i < 10; i++) await raw.set(binAt(i), nextValue());
          },
        },
      );
    }
    const figures = await measure([...pairCases(pair), ...extra], { timeMs: TIME_MS });
    heading(
      `SQLite storage (WAL, synchronous=NORMAL) against prepared statements on the same file, Node ${process.versions.node}`,
    );
    // On a runtime with node:sqlite the storage's own driver is node:sqlite: the first line is the target's.
    comparePair(figures.slice(0, 8), driver.name === 'node:sqlite' ? { get1: { atMost: 1.5 } } : {});
    const [get1, , , , set1] = figures;
    const [builtInGet, builtInSet] = figures.slice(8);
    if (get1 && set1 && builtInGet && builtInSet) {
      compare(get1, builtInGet, { target: { atMost: 1.5 } });
      compare(set1, builtInSet);
    } else if (!builtIn && driver.name !== 'node:sqlite') {
      skip(
        'SQLite storage against node:sqlite',
        `Node ${process.versions.node} has no node:sqlite (22.13 and later have it)`,
      );
    }
  } finally {
    await storage?.close?.();
    for (const db of opened) db.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function redisPart(): Promise<void> {
  const raw = createClient({ url: REDIS_URL });
  raw.on('error', (error) => console.warn(`raw redis client: ${String(error)}`));
  await raw.connect();
  const storage = await redisStorage(REDIS_URL, storageOptions);
  const index = `${NAMESPACE}:{${VISITOR}}`;
  const keyOf = (bin: string) => `${index}:${bin}`;
  const keyv = new Keyv({ store: new KeyvRedis(REDIS_URL), namespace: `${NAMESPACE}-keyv` });
  try {
    const pair: Pair = {
      name: 'redis storage',
      storage,
      rawName: 'raw @redis/client',
      perSample: 10,
      raw: {
        get: async (bin) => {
          const json = await raw.get(keyOf(bin));
          return json === null ? undefined : JSON.parse(json);
        },
        set: (bin, data) => raw.set(keyOf(bin), JSON.stringify(data), { expiration: { type: 'PX', value: TTL_MS } }),
      },
    };
    await expectSameData(pair);
    // The storage's set also keeps the visitor's index of bin names (a SET that outlives its
    // longest-lived bin), so a client that wants bins() without a SCAN does this much too:
    // SET PX, SADD, and PEXPIRE NX then GT (set the index's TTL when it has none, else only lengthen it).
    const multiSet = (bin: string, data: unknown) =>
      raw
        .multi()
        .set(keyOf(bin), JSON.stringify(data), { expiration: { type: 'PX', value: TTL_MS } })
        .sAdd(index, bin)
        .pExpire(index, TTL_MS, 'NX')
        .pExpire(index, TTL_MS, 'GT')
        .exec();
    // The storage's own script from a raw client: what is left is the storage's cost on the client.
    const { sha } = scripts.set;
    const scriptSet = (bin: string, data: unknown) =>
      raw.sendCommand(['EVALSHA', sha, '2', index, keyOf(bin), bin, JSON.stringify(data), String(TTL_MS)]);
    await raw.del(index);
    await multiSet(binAt(7), binValue(7));
    await scriptSet(binAt(8), binValue(8));
    const indexed = (await storage.bins?.(VISITOR)) ?? [];
    const indexTtl = await raw.pTTL(index);
    if (
      JSON.stringify(await storage.get(VISITOR, binAt(7))) !== JSON.stringify(binValue(7)) ||
      JSON.stringify(await storage.get(VISITOR, binAt(8))) !== JSON.stringify(binValue(8)) ||
      indexed.length !== 2 ||
      !indexed.includes(binAt(7)) ||
      !indexed.includes(binAt(8)) ||
      !(indexTtl > TTL_MS - 60_000)
    ) {
      throw new Error(`the MULTI and EVALSHA baselines did not write what the storage writes: ${indexed} ${indexTtl}`);
    }
    for (const [i, bin] of BINS.entries()) await keyv.set(bin, binValue(i), TTL_MS);
    // What the bin cache calls: the storage behind its timeout guard.
    const guarded = guardStorage(Promise.resolve(storage), {
      label: 'redis storage',
      timeoutMs: 250,
      onError: (error) => console.warn(`guard reported: ${error.message}`),
    });
    const figures = await measure(
      [
        ...pairCases(pair),
        {
          label: `Keyv 5 over @keyv/redis get, ${IN_FLIGHT} in flight`,
          ops: IN_FLIGHT,
          run: async () => {
            sink.value = await Promise.all(BINS.map((bin) => keyv.get(bin)));
          },
        },
        {
          label: `redis storage + timeout guard get, ${IN_FLIGHT} in flight`,
          ops: IN_FLIGHT,
          run: async () => {
            sink.value = await Promise.all(BINS.map((bin) => guarded.get(VISITOR, bin)));
          },
        },
        {
          label: 'raw MULTI SET + SADD + PEXPIRE x2, 1 in flight',
          ops: pair.perSample,
          run: async () => {
            for (let i = 0; i < pair.perSample; i++) await multiSet(binAt(i), nextValue());
          },
        },
        {
          label: `raw MULTI SET + SADD + PEXPIRE x2, ${IN_FLIGHT} in flight`,
          ops: IN_FLIGHT,
          run: async () => {
            await Promise.all(BINS.map((bin) => multiSet(bin, nextValue())));
          },
        },
        {
          label: "raw EVALSHA of the storage's set script, 1 in flight",
          ops: pair.perSample,
          run: async () => {
            for (let i = 0; i < pair.perSample; i++) await scriptSet(binAt(i), nextValue());
          },
        },
        {
          label: `raw EVALSHA of the storage's set script, ${IN_FLIGHT} in flight`,
          ops: IN_FLIGHT,
          run: async () => {
            await Promise.all(BINS.map((bin) => scriptSet(bin, nextValue())));
          },
        },
      ],
      { timeMs: TIME_MS },
    );
    heading(`Redis storage against a raw @redis/client on the same server (${redactUrl(REDIS_URL)})`);
    comparePair(figures.slice(0, 8), { get50: { atLeast: 0.7 } });
    const [keyvGet50, guardedGet50, multi1, multi50, script1, script50] = figures.slice(8);
    const [, , , rawGet50, set1, , set50] = figures;
    if (!keyvGet50 || !guardedGet50 || !multi1 || !multi50 || !script1 || !script50 || !rawGet50 || !set1 || !set50)
      throw new Error('missing figures');
    compare(keyvGet50, rawGet50, { by: 'rate' });
    compare(guardedGet50, rawGet50, { by: 'rate' });
    compare(set1, multi1);
    compare(set50, multi50, { by: 'rate' });
    compare(set1, script1);
    compare(set50, script50, { by: 'rate' });
  } finally {
    await raw.del([index, ...BINS.map(keyOf)]);
    await Promise.all(BINS.map((bin) => keyv.delete(bin)));
    await keyv.disconnect();
    await storage.close?.();
    raw.destroy();
  }
}

const PG_GET = 'SELECT value FROM visitor_state WHERE ns = $1 AND visitor = $2 AND bin = $3 AND expires > $4';
const PG_SET = `INSERT INTO visitor_state (ns, visitor, bin, value, expires) VALUES ($1, $2, $3, $4, $5)
  ON CONFLICT (ns, visitor, bin) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires`;

async function postgresPart(): Promise<void> {
  const storage = await postgresStorage(new URL(DATABASE_URL), storageOptions);
  // Set up as the storage's own pool: five connections, commits that do not wait for the disk.
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 5, options: '-c synchronous_commit=off' });
  try {
    const pair: Pair = {
      name: 'postgres storage',
      storage,
      rawName: 'raw pg named query',
      perSample: 10,
      raw: {
        get: async (bin) => {
          const { rows } = await pool.query<{ value: string }>({
            name: 'bench_get',
            text: PG_GET,
            values: [NAMESPACE, VISITOR, bin, Date.now()],
          });
          return rows[0] === undefined ? undefined : JSON.parse(rows[0].value);
        },
        set: (bin, data) =>
          pool.query({
            name: 'bench_set',
            text: PG_SET,
            values: [NAMESPACE, VISITOR, bin, JSON.stringify(data), Date.now() + TTL_MS],
          }),
      },
    };
    await expectSameData(pair);
    const figures = await measure(pairCases(pair), { timeMs: TIME_MS });
    heading(`PostgreSQL storage against a raw pg pool on the same table (${redactUrl(DATABASE_URL)})`);
    comparePair(figures);
  } finally {
    await pool.query('DELETE FROM visitor_state WHERE ns = $1', [NAMESPACE]);
    await pool.end();
    await storage.close?.();
  }
}

/** A response view that keeps the value of each cookie set on it. */
function cookieJar(): ResponseView & { readonly values: Record<string, string> } {
  const values: Record<string, string> = {};
  return {
    values,
    headersSent: false,
    getHeader: () => undefined,
    setHeader: () => {},
    appendHeader: () => {},
    setCookie(name, serialized) {
      values[name] = serialized.slice(name.length + 1, serialized.indexOf(';'));
    },
  };
}

async function cookiePart(): Promise<void> {
  const keys = lib.createKeyRing([SECRET]);
  const storage = lib.cookieStorage();
  const password = `${SECRET}-iron`;
  const bin = 'bench:profile';
  const profile = {
    name: 'Ada Lovelace',
    email: 'ada@example.org',
    locale: 'en-GB',
    currency: 'EUR',
    theme: 'dark',
    recent: ['p-1042', 'p-2210', 'p-3307', 'p-4415'],
    consent: { analytics: true, ads: false },
    updated: 1_700_000_000_000,
  };
  const request = (cookies: Record<string, string>, response: ResponseView) => ({
    cookies,
    secure: false,
    response,
    keys,
    now: Date.now,
  });
  const sealAndOpen = async (): Promise<unknown> => {
    const jar = cookieJar();
    await storage.bind(request({}, jar)).set(VISITOR, bin, profile, TTL_MS);
    return storage.bind(request(jar.values, cookieJar())).get(VISITOR, bin);
  };
  // The same data as the cookie storage's payload: the visitor, the bin and its expiry.
  const payload = { v: VISITOR, b: { [bin]: [profile, Date.now() + TTL_MS] } };
  const ironSealAndOpen = async (): Promise<unknown> => unsealData(await sealData(payload, { password }), { password });

  if (JSON.stringify(await sealAndOpen()) !== JSON.stringify(profile)) throw new Error('cookie storage lost the data');
  if (JSON.stringify(await ironSealAndOpen()) !== JSON.stringify(payload))
    throw new Error('iron-session lost the data');
  const [ours, iron] = await measure(
    [
      {
        label: 'cookie storage set + get (seal, unseal)',
        run: async () => {
          sink.value = await sealAndOpen();
        },
      },
      {
        label: 'iron-session 8 sealData + unsealData',
        run: async () => {
          sink.value = await ironSealAndOpen();
        },
      },
    ],
    { timeMs: TIME_MS },
  );
  if (!ours || !iron) throw new Error('missing figures');
  heading(`cookie storage, a ${JSON.stringify(profile).length}-byte bin, against iron-session`);
  compare(ours, iron, { target: { fasterBy: 20 } });
}

async function roundTripPart(): Promise<void> {
  const raw = createClient({ url: REDIS_URL });
  raw.on('error', (error) => console.warn(`raw redis client: ${String(error)}`));
  await raw.connect();
  const namespace = `${NAMESPACE}-rt`;
  const visitors = lib.createVisitorState({ secret: SECRET, store: REDIS_URL, namespace });
  const five = ['bench:a', 'bench:b', 'bench:c', 'bench:d', 'bench:e'] as const;
  let visitorId: string | undefined;
  try {
    await visitors.ready();
    const socket = { remoteAddress: '203.0.113.7' };
    const first = fakeResponse();
    const newcomer = await visitors.resolve({ headers: {}, socket }, first);
    visitorId = newcomer.id;
    for (const [i, name] of five.entries()) await newcomer.cache.set(name, binValue(i));
    const setCookie = first.headers.get('set-cookie');
    const line = (Array.isArray(setCookie) ? setCookie : [String(setCookie)]).find((l) => l.startsWith('vsid='));
    if (!line) throw new Error('the first visit set no visitor cookie');
    const cookie = line.slice(0, line.indexOf(';'));

    const readsSoFar = async () => {
      const stats = await raw.info('commandstats');
      const calls = (command: string) => Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
      return calls('get') + calls('mget');
    };
    // Other clients of the same server may send reads meanwhile: the fewest of three counts is ours.
    const counts: number[] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      const visitor = await visitors.resolve({ headers: { cookie }, socket }, fakeResponse());
      if (visitor.id !== visitorId) throw new Error('the returning visitor got another ID');
      const before = await readsSoFar();
      const found = await visitor.cache.getMany(five);
      const after = await readsSoFar();
      if (found.some((data, i) => JSON.stringify(data) !== JSON.stringify(binValue(i)))) {
        throw new Error(`getMany read ${JSON.stringify(found)}`);
      }
      counts.push(after - before);
    }
    const trips = Math.min(...counts);
    heading('round trips of one request that reads 5 bins from Redis through the bin cache');
    check(
      'visitor.cache.getMany of 5 bins',
      `5 bins in ${trips} round trip(s) (Redis GET + MGET calls; readings ${counts.join(', ')})`,
      'target 1',
      trips === 1,
    );
  } finally {
    if (visitorId !== undefined) await raw.del(five.map((name) => `${namespace}:{${visitorId}}:${name}`));
    await visitors.close();
    raw.destroy();
  }
}

const redactUrl = (url: string) => url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');

console.log(`storage: ${measuredCode()}; each figure is the mean of a round, median of 5 rounds`);
await memoryPart();
await sqlitePart();
if (await canConnect(REDIS_URL)) {
  await redisPart();
  await roundTripPart();
} else {
  skip('Redis storage and bin cache round trips', `nothing answers at ${redactUrl(REDIS_URL)}; start redis-server`);
}
if (await canConnect(DATABASE_URL)) await postgresPart();
else skip('PostgreSQL storage', `nothing answers at ${redactUrl(DATABASE_URL)}; start PostgreSQL`);
await cookiePart();
summary('storage');
