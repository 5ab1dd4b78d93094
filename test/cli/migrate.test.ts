import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/crypto.js';
import { openStorage } from '../../src/state/registry.js';
import type { Storage, StoredBin } from '../../src/state/storage.js';
import { DATABASE_URL, hasProgram, need, needPostgres, needRedis, REDIS_URL } from '../helpers/services.js';
import { builtBin, cli } from './bin.js';

const VISITORS = 1_000;
const HOUR = 3_600_000;
// Three bins per visitor with lifetimes far apart, each a little different per visitor: a bin
// that arrived with a fresh default lifetime, or another bin's, cannot pass for its own.
const BINS = [
  { bin: 'geo:city', ttl: (i: number) => 2 * HOUR + i * 1_000, data: (i: number) => ({ city: `City ${i}` }) },
  { bin: 'ui:theme', ttl: (i: number) => 3 * 24 * HOUR + i * 1_000, data: (i: number) => (i % 2 ? 'dark' : 'light') },
  { bin: 'ab:bucket', ttl: (i: number) => 20 * 24 * HOUR + i * 1_000, data: (i: number) => [i, i % 7] },
];
// Expiry is kept as an absolute time: it moves by clock rounding, not by how long the run takes.
const TOLERANCE_MS = 5_000;
// Generous: 3,000 bins take a few seconds, and far longer on a machine shared by many test runs.
const RUN_TIMEOUT = 180_000;

const redisUp = await needRedis();
const withTerminal = await need(
  'script (util-linux)',
  () => hasProgram('script'),
  'install it with: apt-get install -y bsdutils',
);
const postgresUp = await needPostgres();
const dir = await mkdtemp(join(tmpdir(), 'visitor-state-cli-'));
const opened: Storage[] = [];

const open = async (url: string, namespace: string): Promise<Storage> => {
  const storage = (await openStorage(url, {
    namespace,
    maxEntries: 100_000,
    timeoutMs: 10_000,
    report: (error) => {
      throw error;
    },
  })) as Storage;
  opened.push(storage);
  return storage;
};

const idOf = (i: number) => `v${String(i).padStart(4, '0')}${randomId().slice(0, 12)}`;

async function inBatches<T>(items: readonly T[], work: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += 50) await Promise.all(items.slice(i, i + 50).map(work));
}

/** 1,000 visitors with three bins each, and a user's link to the first one, as `visitor.link()` keeps it. */
async function seed(source: Storage): Promise<string[]> {
  const ids = Array.from({ length: VISITORS }, (_, i) => idOf(i));
  await inBatches(ids, (id) => {
    const i = ids.indexOf(id);
    return Promise.all(BINS.map((b) => source.set(id, b.bin, b.data(i), b.ttl(i))));
  });
  const slot = `L${randomId()}`;
  await source.set(slot, '@link', ids[0], 400 * 24 * HOUR);
  await source.set(ids[0] as string, `@link:${slot}`, 1, 400 * 24 * HOUR);
  return ids;
}

const byBin = (entries: readonly StoredBin[]) => new Map(entries.map((e) => [e.bin, e]));

function migrateCase(name: string, up: boolean, fromUrl: () => string, toUrl: () => string) {
  describe.skipIf(!up)(`migrate ${name}`, () => {
    const namespace = `vs-cli-${randomId().slice(0, 10)}`;
    let source: Storage;
    let target: Storage;
    let ids: string[];

    beforeAll(async () => {
      await builtBin();
      source = await open(fromUrl(), namespace);
      target = await open(toUrl(), namespace);
      ids = await seed(source);
      // The application, already on the new store, wrote this bin there after the switch: it must win.
      await target.set(ids[1] as string, 'ui:theme', 'written-after-switch', HOUR);
    }, 120_000);

    it(
      'copies every bin of every visitor with the lifetime it had left, links included',
      async () => {
        const run = await cli(['migrate', '--from', fromUrl(), '--to', toUrl(), '--namespace', namespace]);
        expect(run.stderr).not.toContain('Error');
        expect(run.status, run.stderr).toBe(0);
        const moved = VISITORS * BINS.length - 1 + 2; // all but the bin written after the switch, plus the link's two records
        expect(run.stdout).toContain(`migrated ${VISITORS + 1} visitors: ${moved} bins moved, 1 skipped`);
        expect(run.stdout).toContain('0 failed');

        const sourceEntries = new Map<string, Map<string, StoredBin>>();
        const targetEntries = new Map<string, Map<string, StoredBin>>();
        await inBatches(ids, async (id) => {
          sourceEntries.set(id, byBin(await source.entries!(id)));
          targetEntries.set(id, byBin(await target.entries!(id)));
        });
        let checked = 0;
        for (const [i, id] of ids.entries()) {
          for (const b of BINS) {
            const arrived = targetEntries.get(id)?.get(b.bin);
            const left = sourceEntries.get(id)?.get(b.bin);
            expect(arrived, `${id} ${b.bin}`).toBeDefined();
            if (i === 1 && b.bin === 'ui:theme') {
              expect(arrived?.data).toBe('written-after-switch');
              continue;
            }
            expect(arrived?.data).toEqual(b.data(i));
            expect(Math.abs((arrived?.expiresAt ?? 0) - (left?.expiresAt ?? 0))).toBeLessThan(TOLERANCE_MS);
            checked++;
          }
        }
        expect(checked).toBe(VISITORS * BINS.length - 1);
        const backReference = [...(targetEntries.get(ids[0] as string)?.keys() ?? [])].find((b) =>
          b.startsWith('@link:'),
        );
        expect(backReference).toBeDefined();
        expect(await target.get((backReference as string).slice('@link:'.length), '@link')).toBe(ids[0]);
      },
      RUN_TIMEOUT,
    );

    it(
      'moves nothing on a second run: what arrived is skipped',
      async () => {
        const run = await cli(['migrate', '--from', fromUrl(), '--to', toUrl(), '--namespace', namespace]);
        expect(run.status, run.stderr).toBe(0);
        expect(run.stdout).toContain(
          `migrated ${VISITORS + 1} visitors: 0 bins moved, ${VISITORS * BINS.length + 2} skipped`,
        );
        expect(await target.get(ids[1] as string, 'ui:theme')).toBe('written-after-switch');
      },
      RUN_TIMEOUT,
    );

    it(
      'prints plain progress lines, not a bar, when standard error is not a terminal',
      async () => {
        const run = await cli(['migrate', '--from', fromUrl(), '--to', toUrl(), '--namespace', namespace]);
        expect(run.stderr).toMatch(/^migrate: \d+ visitors, \d+ moved, \d+ skipped, 0 failed, \d+ bins\/s$/m);
        // No escape sequence or carriage return: what a bar redraws itself with.
        expect(run.stderr.includes('\u001b[') || run.stderr.includes('\r')).toBe(false);
      },
      RUN_TIMEOUT,
    );

    it.runIf(withTerminal)(
      'draws a progress bar with counts, rate and ETA on a terminal',
      async () => {
        // script(1) runs the command on a pseudo-terminal, as an operator's shell would.
        const args = [
          process.execPath,
          await builtBin(),
          'migrate',
          '--from',
          fromUrl(),
          '--to',
          toUrl(),
          '--namespace',
          namespace,
        ];
        const command = args.map((arg) => `'${arg.replaceAll("'", "'\\''")}'`).join(' ');
        const run = spawnSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', env: process.env });
        expect(run.status, run.stderr).toBe(0);
        expect(run.stdout).toMatch(
          /migrate \[[^\]]*\] 100% \| 1001\/1001 visitors \| 0 moved, 3002 skipped, 0 failed \| \d+ bins\/s \| ETA/,
        );
        expect(run.stdout).toContain('migrated 1001 visitors: 0 bins moved');
      },
      RUN_TIMEOUT,
    );
  });
}

const sqliteUrl = () => `sqlite://${join(dir, 'source.sqlite')}`;
migrateCase('from SQLite to Redis', redisUp, sqliteUrl, () => REDIS_URL);
migrateCase(
  'from Redis to PostgreSQL',
  redisUp && postgresUp,
  () => REDIS_URL,
  () => DATABASE_URL,
);

/** Deletes every bin the storage holds in its namespace: Redis and PostgreSQL outlive the run. */
async function empty(storage: Storage): Promise<void> {
  let page = await storage.visitors!();
  for (;;) {
    await inBatches(page.ids, async (id) =>
      Promise.all((await storage.bins!(id)).map((bin) => storage.delete(id, bin))),
    );
    if (page.next === undefined) return;
    page = await storage.visitors!({ next: page.next });
  }
}

afterAll(async () => {
  for (const storage of opened) await empty(storage);
  await Promise.all(opened.map((storage) => storage.close?.()));
  await rm(dir, { recursive: true, force: true });
});
