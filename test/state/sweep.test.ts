import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@redis/client';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/crypto.js';
import { ConfigError } from '../../src/errors.js';
import { postgresStorage } from '../../src/state/postgres-storage.js';
import { redisStorage } from '../../src/state/redis-storage.js';
import { sqliteDriver } from '../../src/state/sqlite-driver.js';
import { SQLITE_SWEEP_SQL, sqliteStorage } from '../../src/state/sqlite-storage.js';
import type { Storage, StorageOptions } from '../../src/state/storage.js';
import { DATABASE_URL, needPostgres, needRedis, REDIS_URL } from '../helpers/services.js';

const ROWS = 2_500; // more than two sweep batches
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const reported: unknown[] = [];
const options = (namespace: string): StorageOptions => ({
  namespace,
  maxEntries: 100_000,
  report: (error) => reported.push(error),
});

const dir = await mkdtemp(join(tmpdir(), 'visitor-state-sweep-'));
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  expect(reported).toEqual([]);
});

const redisUp = await needRedis();
const postgresUp = await needPostgres();

/** Writes ROWS short-lived bins over a few visitors, plus one long-lived bin. */
async function fill(storage: Storage, ttlMs: number): Promise<string> {
  const keeper = randomId();
  const visitors = Array.from({ length: 10 }, () => randomId());
  let next = 0;
  const writer = async () => {
    while (next < ROWS) {
      const i = next++;
      await storage.set(visitors[i % 10] as string, `bin-${i}`, { i }, ttlMs);
    }
  };
  await Promise.all(Array.from({ length: 20 }, writer));
  await storage.set(keeper, 'kept', 'yes', 60_000);
  return keeper;
}

describe('SQLite sweep', () => {
  it('removes every expired row from the table, in batches through the expires index', async () => {
    const file = join(dir, 'sweep.sqlite');
    const storage = await sqliteStorage(new URL(`sqlite://${file}`), options('sweep'));
    const keeper = await fill(storage, 100);
    await sleep(200);

    // A second connection, through the driver the storage uses on this runtime.
    const db = (await sqliteDriver(file)).open(file);
    const count = () =>
      (db.prepare('SELECT count(*) AS n FROM visitor_state WHERE expires <= ?').get(Date.now()) as { n: number }).n;
    expect(count()).toBe(ROWS);

    expect(await storage.sweep?.()).toBe(ROWS);
    expect(count()).toBe(0);
    expect(await storage.get(keeper, 'kept')).toBe('yes');

    const plan = db.prepare(`EXPLAIN QUERY PLAN ${SQLITE_SWEEP_SQL}`).all('sweep', Date.now()) as { detail: string }[];
    const details = plan.map((step) => step.detail).join('\n');
    expect(details).toMatch(
      /SEARCH visitor_state USING (COVERING )?INDEX visitor_state_ns_expires \(ns=\? AND expires<\?\)/,
    );
    expect(details).not.toMatch(/SCAN visitor_state/);

    db.close();
    await storage.close?.();
  });

  it('refuses a path that cannot be opened with a ConfigError, without crashing', async () => {
    const notAFolder = join(dir, 'plain-file');
    await writeFile(notAFolder, 'not a folder');
    const error = await sqliteStorage(new URL(`sqlite://${notAFolder}/state.sqlite`), options('x')).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain('plain-file');

    // A folder where the file should be: the folder exists, the open itself fails.
    const folder = await mkdtemp(join(dir, 'folder-'));
    await expect(sqliteStorage(new URL(`sqlite://${folder}`), options('x'))).rejects.toBeInstanceOf(ConfigError);

    // A file that is not a database.
    await expect(sqliteStorage(new URL(`sqlite://${notAFolder}`), options('x'))).rejects.toBeInstanceOf(ConfigError);
  });
});

describe.runIf(postgresUp)('PostgreSQL sweep', () => {
  it('removes every expired row from the table', async () => {
    const namespace = `sweep-${randomId()}`;
    const storage = await postgresStorage(new URL(DATABASE_URL), options(namespace));
    const keeper = await fill(storage, 100);
    await sleep(200);

    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
    const count = async () =>
      Number(
        (
          await pool.query('SELECT count(*) AS n FROM visitor_state WHERE ns = $1 AND expires <= $2', [
            namespace,
            Date.now(),
          ])
        ).rows[0].n,
      );
    expect(await count()).toBe(ROWS);

    expect(await storage.sweep?.()).toBe(ROWS);
    expect(await count()).toBe(0);
    expect(await storage.get(keeper, 'kept')).toBe('yes');

    const { rows } = await pool.query(
      "SELECT indexdef FROM pg_indexes WHERE tablename = 'visitor_state' AND indexname = 'visitor_state_ns_expires'",
    );
    expect(rows).toEqual([{ indexdef: expect.stringContaining('(ns, expires)') }]);
    await pool.end();
    await storage.close?.();
  });
});

describe.runIf(redisUp)('Redis expiry', () => {
  it('is native: a written key carries a TTL no longer than asked', async () => {
    const namespace = `sweep-${randomId()}`;
    const storage = await redisStorage(new URL(REDIS_URL), options(namespace));
    const visitor = randomId();
    await storage.set(visitor, 'geo', 'Lyon', 30_000);
    expect(storage.sweep).toBeUndefined();

    const client = await createClient({ url: REDIS_URL }).connect();
    const pttl = await client.pTTL(`${namespace}:{${visitor}}:geo`);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(30_000);
    client.destroy();
    await storage.close?.();
  });
});
