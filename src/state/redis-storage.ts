import { ConfigError, StorageError } from '../errors.js';
import { loadPeer } from './load-peer.js';
import { pauseAfterLostRace } from './lost-race.js';
import { clusterLink } from './redis-cluster.js';
import { deadlines } from './redis-deadline.js';
import { CONNECT_TIMEOUT_MS, type RedisDriver, type RedisLink, sentinelLink, singleLink } from './redis-link.js';
import { type ScriptName, scripts } from './redis-scripts.js';
import { redisTarget } from './redis-url.js';
import type { Storage, StorageOptions, StoredBin } from './storage.js';

export type { RedisDriver } from './redis-link.js';

/** What the Redis storage takes besides the URL and the common storage options. */
export interface RedisStorageOptions {
  /**
   * The `@redis/client` module to connect with (major 5 or 6), for an application that loads
   * its own copy.
   * @default the installed `@redis/client`
   */
  readonly driver?: RedisDriver;
}

const DEFAULT_TIMEOUT_MS = 250;
/** How often `update` may find the bin changed under it before it gives up. */
const UPDATE_ATTEMPTS = 50;
const DEFAULT_PAGE = 1_000;
// Keys SCAN looks at per call: a small page must not cost a round trip per few keys of a large database.
const SCAN_COUNT = 1_000;
const GLOB = /[*?[\]\\]/g;
// Visitor IDs are 1 to 128 characters of A-Z a-z 0-9 _ -.
const VISITOR_ID = /^[A-Za-z0-9_-]{1,128}$/;

const pxOf = (ttlMs: number) => String(Math.max(1, Math.ceil(ttlMs)));
const parse = (text: unknown): unknown => (typeof text === 'string' ? JSON.parse(text) : undefined);

/**
 * Storage in Redis, a Redis Cluster or the master a Redis Sentinel names (`@redis/client` 5
 * or 6 must be installed). Each bin is a key `${namespace}:{${visitorId}}:${bin}` with a native
 * TTL, so nothing needs sweeping. Beside them, `${namespace}:{${visitorId}}` is a SET of the
 * visitor's bin names, written by the same Lua script as each bin, so `bins()` and `entries()`
 * read one key instead of scanning the keyspace. The braces are a hash tag: a visitor's keys
 * share one cluster slot, so `getMany` is one `MGET` and every script is atomic on a Cluster.
 *
 * - `add` is `SET NX PX`; `update` a compare-and-set on the bin's text, retried when another
 *   writer came first.
 * - Every call ends within `timeoutMs`. A write that timed out may still land, if it had
 *   reached the server before the deadline (a command still in the client's queue is dropped).
 *   `update` stays correct regardless: its write lands only over the value its `next` saw.
 * - Expiry runs on Redis's clock: the `now` option cannot move it; it only dates `entries()`.
 * - The factory never fails because the server is down: it reports the error, calls fail at
 *   once (no offline queue) until the connection is back, and the client reconnects by
 *   itself. A cluster follows a failover (see `clusterLink`), a Sentinel its `switch-master`.
 *
 * @example
 * ```ts
 * const storage = await redisStorage(new URL('redis-sentinel://s1:26379,s2:26379/mymaster'), {
 *   namespace: 'vs',
 *   maxEntries: 100_000,
 *   report: console.error,
 * });
 * ```
 */
export async function redisStorage(
  url: URL | string,
  options: StorageOptions,
  { driver }: RedisStorageOptions = {},
): Promise<Storage> {
  const target = redisTarget(url);
  if (/[{}]/.test(options.namespace))
    throw new ConfigError(`namespace '${options.namespace}' must not contain '{' or '}' (a Redis Cluster hash tag)`);
  const client = driver ?? (await loadPeer<RedisDriver>('@redis/client', target.label));
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const bound = deadlines(timeoutMs, target.label);
  const now = options.now ?? Date.now;

  let down = false;
  const health = {
    // Reported once per outage; every failed call still rejects on its own.
    failed(error: unknown) {
      if (down) return;
      down = true;
      options.report(new StorageError(`store '${target.label}': connection failed; reconnecting`, { cause: error }));
    },
    recovered() {
      down = false;
    },
  };
  const open = { single: singleLink, cluster: clusterLink, sentinel: sentinelLink }[target.kind];
  const link: RedisLink = open(client, target, bound, health);

  // Wait for the first connection or the first failure, never longer than the connect timeout.
  let waiting: NodeJS.Timeout | undefined;
  await Promise.race([link.opened, new Promise((done) => (waiting = setTimeout(done, CONNECT_TIMEOUT_MS)))]);
  clearTimeout(waiting);

  const indexOf = (visitorId: string) => `${options.namespace}:{${visitorId}}`;
  const keyOf = (visitorId: string, bin: string) => `${indexOf(visitorId)}:${bin}`;

  const run = async (name: ScriptName, visitorId: string, bin: string, args: readonly string[]): Promise<unknown> => {
    const { sha, source } = scripts[name];
    const index = indexOf(visitorId);
    const keys = ['2', index, `${index}:${bin}`];
    try {
      return await link.send(index, ['EVALSHA', sha, ...keys, ...args]);
    } catch (error) {
      // A server that has not seen the script yet (or restarted, or a promoted replica) gets it in full.
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return link.send(index, ['EVAL', source, ...keys, ...args]);
    }
  };

  const turns = new Map<string, Promise<unknown>>();
  const inTurn = <T>(key: string, run: () => Promise<T>): Promise<T> => {
    const mine = (turns.get(key) ?? Promise.resolve()).then(run);
    const done = mine.then(
      () => {},
      () => {},
    );
    turns.set(key, done);
    void done.then(() => {
      if (turns.get(key) === done) turns.delete(key);
    });
    return mine;
  };

  const list = async (visitorId: string, withData: boolean) => {
    const reply = await run('list', visitorId, '', [withData ? '1' : '0']);
    return Array.isArray(reply) ? (reply as unknown[]) : [];
  };

  return {
    async get(visitorId, bin) {
      return parse(await link.send(indexOf(visitorId), ['GET', keyOf(visitorId, bin)]));
    },

    async getMany(visitorId, bins) {
      if (bins.length === 0) return [];
      const reply = await link.send(indexOf(visitorId), ['MGET', ...bins.map((bin) => keyOf(visitorId, bin))]);
      return (reply as unknown[]).map(parse);
    },

    async set(visitorId, bin, data, ttlMs) {
      await run('set', visitorId, bin, [bin, JSON.stringify(data), pxOf(ttlMs)]);
    },

    async add(visitorId, bin, data, ttlMs) {
      return Number(await run('add', visitorId, bin, [bin, JSON.stringify(data), pxOf(ttlMs)])) === 1;
    },

    async delete(visitorId, bin) {
      await run('delete', visitorId, bin, [bin]);
    },

    // Updates of one bin from this process take turns, so only other processes compete for it.
    update: (visitorId, bin, next, ttlMs) =>
      inTurn(keyOf(visitorId, bin), async () => {
        const deadline = Date.now() + timeoutMs;
        let text = (await link.send(indexOf(visitorId), ['GET', keyOf(visitorId, bin)])) as string | null;
        for (let attempt = 1; ; attempt++) {
          const value = next(parse(text));
          const json = value === undefined ? '' : JSON.stringify(value);
          const seen = typeof text === 'string' ? ['1', text] : ['0'];
          // Not retried when it times out: it may have landed, and then next() has been applied once.
          const reply = (await run('update', visitorId, bin, [bin, json, pxOf(ttlMs), ...seen])) as unknown[];
          if (Number(reply[0]) === 1) return parse(json || undefined);
          if (attempt === UPDATE_ATTEMPTS || Date.now() > deadline)
            throw new StorageError(
              `store '${target.label}': update of '${bin}' gave up after ${attempt} attempts, each overtaken by another writer`,
            );
          if (attempt === 1) {
            // The script handed back what the other writer stored: try again on it at once.
            text = (reply[1] as string | undefined) ?? null;
          } else {
            // Losing again means retrying in step with a writer that never pauses (one updating
            // this bin in a loop): a random pause breaks the step, then a fresh read, since what
            // the script handed back is stale by then.
            await pauseAfterLostRace(attempt);
            text = (await link.send(indexOf(visitorId), ['GET', keyOf(visitorId, bin)])) as string | null;
          }
        }
      }),

    async bins(visitorId) {
      return (await list(visitorId, false)).map(String);
    },

    async entries(visitorId) {
      const flat = await list(visitorId, true);
      const at = now();
      const found: StoredBin[] = [];
      for (let i = 0; i + 2 < flat.length; i += 3) {
        const ms = Number(flat[i + 2]);
        found.push({
          bin: String(flat[i]),
          data: parse(flat[i + 1]),
          expiresAt: ms < 0 ? Number.MAX_SAFE_INTEGER : at + ms,
        });
      }
      return found;
    },

    // A SCAN over the index keys, master by master: for the command line, not for requests.
    // A page ends once it holds `limit` IDs or the scan is over, so it may hold a few more (a SCAN
    // batch is not split); an ID may come on two pages, as SCAN may return a key twice.
    async visitors(page = {}) {
      const masters = await link.masters();
      const limit = page.limit ?? DEFAULT_PAGE;
      const [at = '0', from = '0'] = (page.next ?? '0:0').split(':');
      const start = `${options.namespace.replace(GLOB, '\\$&')}:{`;
      const prefix = `${options.namespace}:{`;
      const ids = new Set<string>();
      let master = Number(at);
      let cursor = from;
      while (master < masters.length && ids.size < limit) {
        const [nextCursor, keys] = (await masters[master]!.send([
          'SCAN',
          cursor,
          'MATCH',
          `${start}*}`,
          'COUNT',
          String(Math.max(limit, SCAN_COUNT)),
          'TYPE',
          'set',
        ])) as [string, string[]];
        for (const key of keys) {
          const id = key.slice(prefix.length, -1);
          if (key.startsWith(prefix) && VISITOR_ID.test(id)) ids.add(id);
        }
        cursor = String(nextCursor);
        if (cursor === '0') master++;
      }
      return master < masters.length ? { ids: [...ids], next: `${master}:${cursor}` } : { ids: [...ids] };
    },

    close: () => link.close(),
  };
}
