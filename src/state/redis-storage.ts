import { ConfigError, StorageError } from '../errors.js';
import { unref } from '../unref.js';
import { describeStore, loadPeer } from './load-peer.js';
import { readsFromJsonText, type Storage, type StorageOptions } from './storage.js';

const CONNECT_TIMEOUT_MS = 2_000;
const SCAN_COUNT = '1000';

// Exponential backoff from 50 ms, capped at 2 s: a restarted server is found again quickly.
const backoff = (retries: number): number => Math.min(50 * 2 ** retries, 2_000);

interface Node {
  readonly host: string;
  readonly port: number;
}

interface Target {
  readonly tls: boolean;
  readonly nodes: readonly Node[];
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** A URL the single client can take as it is; absent for a cluster. */
  readonly url: string | undefined;
}

/** The commands this storage sends, on one client or on a cluster. */
interface Commands {
  get(key: string): Promise<string | null>;
  mGet(keys: string[]): Promise<(string | null)[]>;
  set(
    key: string,
    value: string,
    options: { expiration: { type: 'PX'; value: number }; condition?: 'NX' },
  ): Promise<unknown>;
  del(key: string): Promise<unknown>;
}

const nodeOf = (scheme: string, text: string, store: string): Node => {
  let parsed: URL;
  try {
    parsed = new URL(`${scheme}//${text}`);
  } catch (error) {
    throw new ConfigError(`store '${store}': '${text}' is not a host or host:port`, { cause: error });
  }
  return { host: parsed.hostname.replace(/^\[|\]$/g, ''), port: parsed.port === '' ? 6379 : Number(parsed.port) };
};

/**
 * Reads `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS), a cluster given by
 * several hosts (`redis://h1:7000,h2:7001/`) or by `?cluster=true` on one seed host.
 * Several hosts with ports are not a valid WHATWG URL, so they may come as a string.
 */
function targetOf(input: URL | string): Target {
  const text = String(input);
  const store = describeStore(text);
  const match = /^(rediss?:)\/\/(?:([^/?#]*)@)?([^@/?#]*)([^?#]*)(\?[^#]*)?/i.exec(text);
  if (!match) throw new ConfigError(`store '${store}' is not a redis:// or rediss:// URL`);
  const [, rawScheme = '', auth, hosts = '', , query = ''] = match;
  const scheme = rawScheme.toLowerCase();
  const [user, pass] = auth === undefined ? [] : auth.split(/:(.*)/s, 2);
  const username = user ? decodeURIComponent(user) : undefined;
  const password = pass ? decodeURIComponent(pass) : undefined;
  const nodes = (hosts === '' ? ['127.0.0.1'] : hosts.split(',')).map((host) => nodeOf(scheme, host, store));
  const cluster = nodes.length > 1 || new URLSearchParams(query).get('cluster') === 'true';
  return { tls: scheme === 'rediss:', nodes, username, password, url: cluster ? undefined : text };
}

const GLOB = /[*?[\]\\]/g;

/**
 * Storage in Redis or a Redis Cluster (`@redis/client` must be installed). Each bin is a
 * key `${namespace}:{${visitorId}}:${bin}` with a native TTL, so nothing needs sweeping;
 * the braces are a hash tag that puts a visitor's bins in one cluster slot, so `getMany`
 * is one `MGET` and `bins()` one `SCAN` on the node that owns that slot.
 *
 * The factory never fails because the server is down: it reports the error, operations
 * reject at once (no offline queue) until the connection is back, and the client
 * reconnects by itself. Connection errors are reported once per outage.
 *
 * @example
 * ```ts
 * const storage = await redisStorage(new URL('redis://127.0.0.1:6379'), {
 *   namespace: 'vs',
 *   maxEntries: 100_000,
 *   report: console.error,
 * });
 * ```
 */
export async function redisStorage(url: URL | string, options: StorageOptions): Promise<Storage> {
  const target = targetOf(url);
  const store = describeStore(url);
  const { createClient, createCluster } = await loadPeer<typeof import('@redis/client')>('@redis/client', url);

  let down = false;
  let settle = () => {};
  const startup = new Promise<void>((done) => {
    settle = done;
  });
  const failed = (error: unknown) => {
    if (down) return;
    down = true;
    options.report(new StorageError(`store '${store}': connection failed; reconnecting`, { cause: error }));
  };
  const recovered = () => {
    down = false;
  };

  const socket = { connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: backoff };
  let commands: Commands;
  let scan: (routeKey: string, pattern: string, cursor: string) => Promise<[string, string[]]>;
  let close: () => Promise<void>;

  if (target.url !== undefined) {
    const client = createClient({ url: target.url, disableOfflineQueue: true, socket });
    client.on('error', (error) => {
      failed(error);
      settle();
    });
    client.on('ready', () => {
      recovered();
      settle();
    });
    commands = client;
    scan = (_routeKey, pattern, cursor) => client.sendCommand(['SCAN', cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT]);
    // connect() resolves when the server answers; until then the client retries by itself.
    client.connect().catch((error: unknown) => {
      failed(error);
      settle();
    });
    close = async () => {
      if (!client.isOpen) return;
      if (client.isReady) await client.close();
      else client.destroy();
    };
  } else {
    const cluster = createCluster({
      rootNodes: target.nodes.map(({ host, port }) => ({ socket: { host, port } })),
      defaults: {
        disableOfflineQueue: true,
        socket: target.tls ? { ...socket, tls: true } : socket,
        ...(target.username === undefined ? {} : { username: target.username }),
        ...(target.password === undefined ? {} : { password: target.password }),
      },
    });
    let connected = false;
    let closed = false;
    let retries = 0;
    let timer: NodeJS.Timeout | undefined;
    cluster.on('error', failed);
    cluster.on('node-error', failed);
    cluster.on('node-ready', recovered);
    // Unlike a single client, a cluster that finds no seed node at start gives up: retry it here.
    const connect = (): Promise<void> =>
      cluster.connect().then(
        () => {
          connected = true;
          recovered();
          settle();
        },
        (error: unknown) => {
          failed(error);
          settle();
          if (closed) return;
          timer = unref(setTimeout(connect, backoff(retries++)));
        },
      );
    const guarded =
      <A extends unknown[], R>(run: (...args: A) => Promise<R>) =>
      (...args: A): Promise<R> =>
        connected ? run(...args) : Promise.reject(new StorageError(`store '${store}': cluster not connected yet`));
    commands = {
      get: guarded((key) => cluster.get(key)),
      mGet: guarded((keys) => cluster.mGet(keys)),
      set: guarded((key, value, setOptions) => cluster.set(key, value, setOptions)),
      del: guarded((key) => cluster.del(key)),
    };
    // SCAN has no key, so it is routed by a key of the visitor's slot: to the master that owns it.
    scan = guarded((routeKey, pattern, cursor) =>
      cluster.sendCommand(routeKey, false, ['SCAN', cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT]),
    );
    void connect();
    close = async () => {
      closed = true;
      clearTimeout(timer);
      if (connected) await cluster.close();
      else if (cluster.isOpen) cluster.destroy();
    };
  }

  // Wait for the first connection or the first failure, never longer than the connect timeout.
  let waiting: NodeJS.Timeout | undefined;
  await Promise.race([startup, new Promise((done) => (waiting = setTimeout(done, CONNECT_TIMEOUT_MS)))]);
  clearTimeout(waiting);

  const prefix = (visitorId: string) => `${options.namespace}:{${visitorId}}:`;

  return {
    ...readsFromJsonText({
      async get(visitorId, bin) {
        return (await commands.get(prefix(visitorId) + bin)) ?? undefined;
      },
      async getMany(visitorId, bins) {
        if (bins.length === 0) return [];
        const start = prefix(visitorId);
        return (await commands.mGet(bins.map((bin) => start + bin))).map((json) => json ?? undefined);
      },
    }),

    async set(visitorId, bin, data, ttlMs) {
      // PX takes a whole number of milliseconds, at least one.
      const px = Math.max(1, Math.ceil(ttlMs));
      await commands.set(prefix(visitorId) + bin, JSON.stringify(data), { expiration: { type: 'PX', value: px } });
    },

    async add(visitorId, bin, data, ttlMs) {
      const px = Math.max(1, Math.ceil(ttlMs));
      const reply = await commands.set(prefix(visitorId) + bin, JSON.stringify(data), {
        expiration: { type: 'PX', value: px },
        condition: 'NX',
      });
      return reply !== null;
    },

    async delete(visitorId, bin) {
      await commands.del(prefix(visitorId) + bin);
    },

    async bins(visitorId) {
      const start = prefix(visitorId);
      const pattern = `${start.replace(GLOB, '\\$&')}*`;
      const found = new Set<string>();
      let cursor = '0';
      do {
        const [next, keys] = await scan(start, pattern, cursor);
        for (const key of keys) found.add(key.slice(start.length));
        cursor = next;
      } while (cursor !== '0');
      return [...found];
    },

    close,
  };
}
