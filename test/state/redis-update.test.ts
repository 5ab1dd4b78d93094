import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/crypto.js';
import { redisStorage } from '../../src/state/redis-storage.js';
import { startFixture } from '../helpers/fixture-process.js';
import {
  needRedis,
  needRedisCluster,
  needRedisServer,
  REDIS_URL,
  type RedisCluster,
  redisCluster,
} from '../helpers/services.js';

const COUNT = 1_000;
const counter = fileURLToPath(new URL('./fixtures/redis-counter.ts', import.meta.url));

const redisUp = await needRedis();
const clusterTools = (await needRedisServer()) && (await needRedisCluster());
const dir = await mkdtemp(join(tmpdir(), 'visitor-state-redis-update-'));
const children: ChildProcess[] = [];
let cluster: RedisCluster | undefined;

beforeAll(async () => {
  if (clusterTools) cluster = await redisCluster(join(dir, 'cluster'));
}, 30_000);
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await cluster?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function startCounter(store: string, visitorId: string, major: string) {
  const started = await startFixture(counter, [store, visitorId, String(COUNT), major]);
  children.push(started.child);
  return started;
}

/** Two processes, each incrementing one bin of one visitor 1,000 times at once: nothing is lost. */
async function countFromTwoProcesses(store: () => string, majors: [string, string]) {
  const visitor = randomId();
  const counters = await Promise.all(majors.map((major) => startCounter(store(), visitor, major)));
  for (const { child } of counters) child.stdin?.write('go\n');
  for (const { exit, stderr } of counters) expect(`exit ${await exit}: ${stderr.join('')}`).toBe('exit 0: ');
  const reader = await redisStorage(store(), { namespace: 'vs-counter', maxEntries: 1, report: () => {} });
  try {
    expect(await reader.get(visitor, 'counter')).toBe(2 * COUNT);
  } finally {
    await reader.close?.();
  }
}

describe('two processes updating one counter 1,000 times each', () => {
  it.runIf(redisUp)(
    'end at 2,000 on Redis, one process on @redis/client 5 and one on 6',
    async () => {
      await countFromTwoProcesses(() => REDIS_URL, ['5', '6']);
    },
    60_000,
  );

  it.runIf(clusterTools)(
    'end at 2,000 on a three-master Redis Cluster, one on each client major',
    async () => {
      await countFromTwoProcesses(() => cluster!.seeds, ['6', '5']);
    },
    60_000,
  );
});
