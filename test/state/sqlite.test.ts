import { existsSync } from 'node:fs';
import { mkdtemp, rename, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/crypto.js';
import { StorageError } from '../../src/errors.js';
import { sqliteDriver } from '../../src/state/sqlite-driver.js';
import { sqliteStorage } from '../../src/state/sqlite-storage.js';
import type { StorageOptions } from '../../src/state/storage.js';

const MINUTE = 60_000;
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
/** Node 22.13 and later have node:sqlite without a flag. */
const hasNodeSqlite = major > 22 || (major === 22 && minor >= 13);
if (!hasNodeSqlite)
  console.warn(`skipped: the node:sqlite tests need Node 22.13 or later; this is Node ${process.versions.node}`);

const dir = await mkdtemp(join(tmpdir(), 'visitor-state-sqlite-'));
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const open = (file: string, extra: Partial<StorageOptions> = {}) => {
  const reported: unknown[] = [];
  const options: StorageOptions = {
    namespace: `ns-${randomId()}`,
    maxEntries: 100_000,
    report: (error) => reported.push(error),
    ...extra,
  };
  return sqliteStorage(new URL(`sqlite://${file}`), options).then((storage) => ({ storage, reported, options }));
};

describe('SQLite driver', () => {
  it.runIf(hasNodeSqlite)("is the runtime's node:sqlite on Node 22.13 and later, so no addon is loaded", async () => {
    expect((await sqliteDriver('sqlite::memory:')).name).toBe('node:sqlite');
    // better-sqlite3 here is built for another Node's ABI: a storage that works proves it was never loaded.
    const { storage } = await open(join(dir, 'builtin.sqlite'));
    await storage.set('v', 'geo', 'Lyon', MINUTE);
    expect(await storage.get('v', 'geo')).toBe('Lyon');
    await storage.close?.();
  });

  it.runIf(!hasNodeSqlite)('is better-sqlite3 where the runtime has no node:sqlite', async () => {
    expect((await sqliteDriver('sqlite::memory:')).name).toBe('better-sqlite3');
  });
});

describe('SQLite storage abilities', () => {
  it('updates in one transaction, deletes on undefined, and writes nothing when next throws', async () => {
    const { storage, reported } = await open(join(dir, 'update.sqlite'));
    const visitor = randomId();
    const results = await Promise.all(
      Array.from({ length: 200 }, () =>
        storage.update?.(visitor, 'n', (n) => ((n as number | undefined) ?? 0) + 1, MINUTE),
      ),
    );
    expect(new Set(results).size).toBe(200);
    expect(await storage.get(visitor, 'n')).toBe(200);

    const failure = new Error('refused');
    await expect(
      storage.update?.(
        visitor,
        'n',
        () => {
          throw failure;
        },
        MINUTE,
      ),
    ).rejects.toBe(failure);
    // The transaction was rolled back: the value is as it was, and the next write is not stuck in it.
    expect(await storage.get(visitor, 'n')).toBe(200);
    await storage.set(visitor, 'other', 1, MINUTE);
    expect(await storage.update?.(visitor, 'n', () => undefined, MINUTE)).toBeUndefined();
    expect(await storage.bins?.(visitor)).toEqual(['other']);
    expect(reported).toEqual([]);
    await storage.close?.();
    // Closed means closed: no call opens the file again behind the application's back.
    await expect(storage.get(visitor, 'other')).rejects.toBeInstanceOf(StorageError);
  });

  it('lists entries with their expiry and visitors page by page, on the clock it is given', async () => {
    let at = 1_900_000_000_000;
    const { storage } = await open(join(dir, 'entries.sqlite'), { now: () => at });
    const ids = Array.from({ length: 7 }, () => randomId()).sort();
    for (const id of ids) await storage.set(id, 'geo', { id }, MINUTE);
    await storage.set(ids[0] as string, 'short', 1, 1_000);
    expect(await storage.entries?.(ids[0] as string)).toEqual(
      expect.arrayContaining([
        { bin: 'geo', data: { id: ids[0] }, expiresAt: at + MINUTE },
        { bin: 'short', data: 1, expiresAt: at + 1_000 },
      ]),
    );
    at += 1_000;
    expect(await storage.get(ids[0] as string, 'short')).toBeUndefined();
    expect(await storage.entries?.(ids[0] as string)).toEqual([
      { bin: 'geo', data: { id: ids[0] }, expiresAt: at - 1_000 + MINUTE },
    ]);
    const first = await storage.visitors?.({ limit: 3 });
    expect(first).toEqual({ ids: ids.slice(0, 3), next: ids[2] });
    const second = await storage.visitors?.({ limit: 3, next: first?.next as string });
    const third = await storage.visitors?.({ limit: 3, next: second?.next as string });
    expect([...(second?.ids ?? []), ...(third?.ids ?? [])]).toEqual(ids.slice(3));
    expect(third?.next).toBeUndefined();
    expect(await storage.sweep?.()).toBe(1);
    at += MINUTE;
    expect(await storage.visitors?.()).toEqual({ ids: [] });
    await storage.close?.();
  });

  it('fails a call within its timeout while another process holds the write lock, then goes on', async () => {
    const file = join(dir, 'busy.sqlite');
    const { storage } = await open(file, { timeoutMs: 50 });
    const visitor = randomId();
    await storage.set(visitor, 'geo', 'before', MINUTE);
    const other = (await sqliteDriver(file)).open(file);
    other.exec('BEGIN IMMEDIATE');
    const error = await storage.set(visitor, 'geo', 'blocked', MINUTE).catch((e: unknown) => e);
    // better-sqlite3 says SQLITE_BUSY in its code, node:sqlite 'database is locked' in its message.
    expect(`${(error as { code?: string }).code} ${(error as Error).message}`).toMatch(
      /SQLITE_BUSY|database is locked/,
    );
    // Readers are not blocked by a writer in WAL mode.
    expect(await storage.get(visitor, 'geo')).toBe('before');
    other.exec('ROLLBACK');
    other.close();
    await storage.set(visitor, 'geo', 'after', MINUTE);
    expect(await storage.get(visitor, 'geo')).toBe('after');
    await storage.close?.();
  });
});

describe('SQLite file under a running process', () => {
  it('reports a deleted file and writes to a new file at the path, not into the unlinked one', async () => {
    const file = join(dir, 'deleted.sqlite');
    const { storage, reported, options } = await open(file);
    const visitor = randomId();
    await storage.set(visitor, 'geo', 'old file', MINUTE);
    await storage.set(visitor, 'theme', 'old file', MINUTE);
    // As `rm state.sqlite` does: the -wal and -shm files beside it stay.
    await unlink(file);
    await sleep(1_100);
    await storage.set(visitor, 'geo', 'new file', MINUTE);
    expect(reported).toEqual([expect.any(StorageError)]);
    expect((reported[0] as Error).message).toContain('deleted');
    expect(existsSync(file)).toBe(true);
    // Another process opening the path sees the write.
    const fresh = await sqliteStorage(new URL(`sqlite://${file}`), options);
    expect(await fresh.get(visitor, 'geo')).toBe('new file');
    // Nothing of the deleted file comes back from its write-ahead log.
    expect(await fresh.get(visitor, 'theme')).toBeUndefined();
    await fresh.close?.();
    await storage.close?.();
  });

  it('writes to the new file at the path right after the file is deleted, without waiting', async () => {
    const file = join(dir, 'deleted-at-once.sqlite');
    const { storage, reported, options } = await open(file);
    const visitor = randomId();
    await storage.set(visitor, 'theme', 'old file', MINUTE);
    await storage.set(visitor, 'count', 10, MINUTE);
    // Each write follows its delete at once, within the second in which reads still trust the open file.
    await unlink(file);
    await storage.set(visitor, 'geo', 'set', MINUTE);
    await unlink(file);
    // The old file still holds an unexpired theme: only in the new file does add take the bin.
    expect(await storage.add?.(visitor, 'theme', 'added', MINUTE)).toBe(true);
    await unlink(file);
    // The old file's count would make 11.
    expect(await storage.update?.(visitor, 'count', (n) => ((n as number | undefined) ?? 0) + 1, MINUTE)).toBe(1);
    expect((reported as Error[]).map((error) => error.message)).toEqual(
      Array.from({ length: 3 }, () => expect.stringContaining('deleted')),
    );
    // A second server opening the path sees the last write.
    const fresh = await sqliteStorage(new URL(`sqlite://${file}`), options);
    expect(await fresh.getMany?.(visitor, ['count', 'theme', 'geo'])).toEqual([1, undefined, undefined]);
    await fresh.close?.();
    await storage.close?.();
  });

  it('deletes and sweeps in the file put at the path right after it is replaced, without waiting', async () => {
    let at = 1_900_000_000_000;
    const file = join(dir, 'replaced-at-once.sqlite');
    const { storage, reported, options } = await open(file, { now: () => at });
    const visitor = randomId();
    await storage.set(visitor, 'geo', 'original', MINUTE);
    const restored = join(dir, 'restored-at-once.sqlite');
    const other = await sqliteStorage(new URL(`sqlite://${restored}`), options);
    await other.set(visitor, 'geo', 'restored', MINUTE);
    await other.set(visitor, 'stale', 'restored', 1_000);
    await other.close?.();
    at += 1_000;
    await rename(restored, file);
    await storage.delete(visitor, 'geo');
    // The restored file's expired bin; the original file has none.
    expect(await storage.sweep?.()).toBe(1);
    expect((reported as Error[]).map((error) => error.message)).toEqual([expect.stringContaining('replaced')]);
    const fresh = await sqliteStorage(new URL(`sqlite://${file}`), options);
    expect(await fresh.get(visitor, 'geo')).toBeUndefined();
    expect(await fresh.sweep?.()).toBe(0);
    await fresh.close?.();
    await storage.close?.();
  });

  it('reports a file replaced under it and goes on with the new file', async () => {
    const file = join(dir, 'replaced.sqlite');
    const { storage, reported, options } = await open(file);
    const visitor = randomId();
    await storage.set(visitor, 'geo', 'original', MINUTE);
    // A restored copy: another database put in place with a rename, as a backup tool does.
    const restored = join(dir, 'restored.sqlite');
    const other = await sqliteStorage(new URL(`sqlite://${restored}`), options);
    await other.set(visitor, 'geo', 'restored', MINUTE);
    await other.close?.();
    await rename(restored, file);
    await sleep(1_100);
    expect(await storage.get(visitor, 'geo')).toBe('restored');
    await storage.set(visitor, 'theme', 'dark', MINUTE);
    expect((reported as Error[]).map((error) => error.message)).toEqual([expect.stringContaining('replaced')]);
    const fresh = await sqliteStorage(new URL(`sqlite://${file}`), options);
    expect(await fresh.getMany?.(visitor, ['geo', 'theme'])).toEqual(['restored', 'dark']);
    await fresh.close?.();
    await storage.close?.();
  });
});
