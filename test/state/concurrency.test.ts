import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/crypto.js';
import { redisStorage } from '../../src/state/redis-storage.js';
import { sqliteStorage } from '../../src/state/sqlite-storage.js';
import type { Storage, StorageOptions } from '../../src/state/storage.js';
import { startFixture } from '../helpers/fixture-process.js';
import { needRedis, REDIS_URL } from '../helpers/services.js';

const BINS = 1_000;
const writer = fileURLToPath(new URL('./fixtures/writer.ts', import.meta.url));

const reported: unknown[] = [];
const options: StorageOptions = {
  namespace: 'vs-concurrency',
  maxEntries: 100_000,
  report: (error) => reported.push(error),
};

const dir = await mkdtemp(join(tmpdir(), 'visitor-state-concurrency-'));
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  expect(reported).toEqual([]);
});

const redisUp = await needRedis();

const startWriter = (store: string, visitorId: string, prefix: string) =>
  startFixture(writer, [store, visitorId, prefix, String(BINS)]);

/**
 * Two processes open the store at once (on SQLite, a file that does not exist yet), then
 * write 1,000 bins each of one visitor at the same time; every bin must end with its last value.
 */
async function writeFromTwoProcesses(store: string, open: () => Promise<Storage>): Promise<void> {
  const visitor = randomId();
  const writers = await Promise.all([startWriter(store, visitor, 'a-'), startWriter(store, visitor, 'b-')]);
  const reader = await open();
  try {
    // A reader that has read once must still see the writes that come later.
    expect(await reader.get(visitor, 'a-0')).toBeUndefined();
    for (const { child } of writers) child.stdin?.write('go\n');
    for (const { exit, stderr } of writers) expect(`exit ${await exit}: ${stderr.join('')}`).toBe('exit 0: ');

    const names = ['a-', 'b-'].flatMap((prefix) => Array.from({ length: BINS }, (_, i) => `${prefix}${i}`));
    const values = await reader.getMany!(visitor, names);
    const expected = ['a-', 'b-'].flatMap((prefix) =>
      Array.from({ length: BINS }, (_, i) => ({ prefix, i, last: true })),
    );
    expect(values).toEqual(expected);
    expect((await reader.bins!(visitor)).length).toBe(2 * BINS);
  } finally {
    await reader.close?.();
  }
}

describe('two processes writing different bins of one visitor at the same time', () => {
  it('lose nothing in one SQLite file', async () => {
    const store = `sqlite://${join(dir, 'shared', 'state.sqlite')}`;
    await writeFromTwoProcesses(store, () => sqliteStorage(new URL(store), options));
  });

  it.runIf(redisUp)('lose nothing in Redis', async () => {
    await writeFromTwoProcesses(REDIS_URL, () => redisStorage(new URL(REDIS_URL), options));
  });
});
