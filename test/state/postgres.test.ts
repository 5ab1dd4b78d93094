import { createServer, type Socket } from 'node:net';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/crypto.js';
import { StorageError } from '../../src/errors.js';
import { postgresStorage } from '../../src/state/postgres-storage.js';
import type { Storage, StorageOptions } from '../../src/state/storage.js';
import { DATABASE_URL, needPostgres } from '../helpers/services.js';

const MINUTE = 60_000;
const postgresUp = await needPostgres();

const open = async (url: string, extra: Partial<StorageOptions> = {}) => {
  const reported: unknown[] = [];
  const storage = await postgresStorage(new URL(url), {
    namespace: `ns-${randomId()}`,
    maxEntries: 100_000,
    report: (error) => reported.push(error),
    ...extra,
  });
  return { storage, reported };
};

const increment = (storage: Storage, visitor: string) =>
  storage.update?.(visitor, 'n', (n) => ((n as number | undefined) ?? 0) + 1, MINUTE);

/** A schema of this test's own, so that dropping its table touches nobody else's. */
const schema = `vs_test_${randomId()
  .replace(/[^a-z0-9]/gi, '')
  .toLowerCase()
  .slice(0, 16)}`;
const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
const inSchema = `${DATABASE_URL}${DATABASE_URL.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
afterAll(async () => {
  if (postgresUp) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.end();
});

describe.runIf(postgresUp)('PostgreSQL storage abilities', () => {
  it('updates atomically from two pools at once, as two servers would', async () => {
    const namespace = `ns-${randomId()}`;
    const one = await open(DATABASE_URL, { namespace });
    const two = await open(DATABASE_URL, { namespace });
    const visitor = randomId();
    await Promise.all(
      Array.from({ length: 100 }, (_, i) => increment(i % 2 === 0 ? one.storage : two.storage, visitor)),
    );
    expect(await one.storage.get(visitor, 'n')).toBe(100);

    const failure = new Error('refused');
    await expect(
      one.storage.update?.(
        visitor,
        'n',
        () => {
          throw failure;
        },
        MINUTE,
      ),
    ).rejects.toBe(failure);
    expect(await two.storage.get(visitor, 'n')).toBe(100);
    expect(await two.storage.update?.(visitor, 'n', () => undefined, MINUTE)).toBeUndefined();
    expect(await one.storage.bins?.(visitor)).toEqual([]);
    expect([...one.reported, ...two.reported]).toEqual([]);
    await one.storage.close?.();
    await two.storage.close?.();
  });

  it('replaces an expired bin on update and add, on the clock it is given', async () => {
    let at = 1_900_000_000_000;
    const { storage } = await open(DATABASE_URL, { now: () => at });
    const visitor = randomId();
    await storage.set(visitor, 'n', 41, 1_000);
    expect(await storage.add?.(visitor, 'n', 0, MINUTE)).toBe(false);
    expect(await increment(storage, visitor)).toBe(42);
    at += MINUTE;
    // Expired: the update starts from nothing, as a get would see it.
    expect(await increment(storage, visitor)).toBe(1);
    at += MINUTE;
    expect(await storage.add?.(visitor, 'n', 7, MINUTE)).toBe(true);
    expect(await storage.entries?.(visitor)).toEqual([{ bin: 'n', data: 7, expiresAt: at + MINUTE }]);
    await storage.close?.();
  });

  it('lists visitors page by page, each once', async () => {
    const { storage } = await open(DATABASE_URL);
    const ids = Array.from({ length: 7 }, () => randomId());
    for (const id of ids) await storage.set(id, '@bins', ['geo'], MINUTE);
    const seen: string[] = [];
    let next: string | undefined;
    do {
      const page = await storage.visitors!({ limit: 3, ...(next === undefined ? {} : { next }) });
      expect(page.ids.length).toBeLessThanOrEqual(3);
      seen.push(...page.ids);
      next = page.next;
    } while (next !== undefined);
    expect(seen.sort()).toEqual([...ids].sort());
    await storage.close?.();
  });

  it('creates its table again when it is dropped under a running application', async () => {
    await admin.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    const { storage, reported } = await open(inSchema);
    const visitor = randomId();
    await storage.set(visitor, 'geo', 'Lyon', MINUTE);
    expect(await storage.get(visitor, 'geo')).toBe('Lyon');
    await admin.query(`DROP TABLE ${schema}.visitor_state`);
    // The state went with the table; the application goes on writing and reading.
    expect(await storage.get(visitor, 'geo')).toBeUndefined();
    await storage.set(visitor, 'geo', 'Oslo', MINUTE);
    expect(await storage.get(visitor, 'geo')).toBe('Oslo');
    const { rows } = await admin.query(`SELECT value FROM ${schema}.visitor_state`);
    expect(rows).toEqual([{ value: '"Oslo"' }]);
    expect(reported).toEqual([expect.any(StorageError)]);
    await storage.close?.();
  });
});

describe.runIf(postgresUp)('PostgreSQL storage failures', () => {
  it("reports the server's own words when it refuses the role", async () => {
    const url = new URL(DATABASE_URL);
    url.username = `nosuchrole_${randomId()
      .slice(0, 8)
      .replace(/[^a-z0-9]/gi, 'x')
      .toLowerCase()}`;
    const { storage, reported } = await open(url.href, { timeoutMs: 2_000 });
    expect(reported).toHaveLength(1);
    const error = reported[0] as StorageError;
    expect(error).toBeInstanceOf(StorageError);
    expect((error.cause as Error).message).toBe(`role "${url.username}" does not exist`);
    expect(error.message).toContain(`role "${url.username}" does not exist`);
    await expect(storage.get(randomId(), 'geo')).rejects.toThrow(`role "${url.username}" does not exist`);
    await storage.close?.();
  });
});

describe('PostgreSQL storage opening', () => {
  it('does not wait past its timeout for a server that accepts and never answers', async () => {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const { port } = server.address() as { port: number };
    const { storage } = await open(`postgres://app@127.0.0.1:${port}/app`, { timeoutMs: 50 });
    // Opened while its first connection still waits for the server: the start was not held up by it.
    expect(sockets.size).toBe(1);
    for (const socket of sockets) socket.destroy();
    await storage.close?.();
    await new Promise<void>((done) => server.close(() => done()));
  });
});
