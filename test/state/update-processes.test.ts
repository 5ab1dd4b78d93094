import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/crypto.js';
import { postgresStorage } from '../../src/state/postgres-storage.js';
import { sqliteStorage } from '../../src/state/sqlite-storage.js';
import type { Storage, StorageOptions } from '../../src/state/storage.js';
import { startFixture } from '../helpers/fixture-process.js';
import { DATABASE_URL, needPostgres } from '../helpers/services.js';

const UPDATES = 1_000;
const updater = fileURLToPath(new URL('./fixtures/updater.ts', import.meta.url));

const dir = await mkdtemp(join(tmpdir(), 'visitor-state-update-'));
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const postgresUp = await needPostgres();

const startUpdater = (store: string, namespace: string, visitorId: string) =>
  startFixture(updater, [store, namespace, visitorId, String(UPDATES)]);

/** Two processes increment one counter of one visitor 1,000 times each, at the same time. */
async function countFromTwoProcesses(store: string, open: (options: StorageOptions) => Promise<Storage>) {
  const namespace = `vs-update-${randomId()}`;
  const visitor = randomId();
  const updaters = await Promise.all([
    startUpdater(store, namespace, visitor),
    startUpdater(store, namespace, visitor),
  ]);
  for (const { child } of updaters) child.stdin?.write('go\n');
  for (const { exit, stderr } of updaters) expect(`exit ${await exit}: ${stderr.join('')}`).toBe('exit 0: ');
  const reported: unknown[] = [];
  const reader = await open({ namespace, maxEntries: 100_000, report: (error) => reported.push(error) });
  try {
    expect(await reader.get(visitor, 'counter')).toBe(2 * UPDATES);
    expect(reported).toEqual([]);
  } finally {
    await reader.close?.();
  }
}

describe('two processes updating one counter 1,000 times each', () => {
  it('count to 2,000 in one SQLite file', async () => {
    const store = `sqlite://${join(dir, 'counter.sqlite')}`;
    await countFromTwoProcesses(store, (options) => sqliteStorage(new URL(store), options));
  }, 120_000);

  it.runIf(postgresUp)(
    'count to 2,000 in PostgreSQL',
    async () => {
      await countFromTwoProcesses(DATABASE_URL, (options) => postgresStorage(new URL(DATABASE_URL), options));
    },
    120_000,
  );
});
