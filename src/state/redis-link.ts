import { StorageError } from '../errors.js';
import type { Deadlines } from './redis-deadline.js';
import type { RedisTarget } from './redis-url.js';

/**
 * The parts of `@redis/client` this storage uses: `createClient`, `createCluster` and
 * `createSentinel`. Majors 5 and 6 both fit; the storage sends raw commands only, so the
 * reply shapes of RESP2 (5's default) and RESP3 (6's) are the same to it.
 */
export interface RedisDriver {
  // `never`: any module's factories fit, whatever its option types; this code calls them through `build`.
  createClient(options: never): unknown;
  createCluster(options: never): unknown;
  createSentinel(options: never): unknown;
}

/** Calls one of the driver's factories with options of this storage's making. */
export const build = <T>(factory: (options: never) => unknown, options: object): T =>
  (factory as (options: object) => unknown)(options) as T;

/** What a command may be sent with: an abort that takes it off the client's queue. */
export interface SendOptions {
  readonly abortSignal: AbortSignal;
}

interface Emitter {
  on(event: string, listener: (...args: never[]) => void): unknown;
}

export interface NodeClient extends Emitter {
  readonly isOpen: boolean;
  readonly isReady: boolean;
  connect(): Promise<unknown>;
  sendCommand(args: readonly string[], options?: SendOptions): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): void;
}

interface SentinelClient extends Emitter {
  connect(): Promise<unknown>;
  sendCommand(readonly: boolean, args: readonly string[], options?: SendOptions): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): void;
}

/** One server that takes commands without a key (SCAN): the single server, or one master of a cluster. */
export interface RedisMaster {
  readonly id: string;
  send(args: readonly string[]): Promise<unknown>;
}

/** A connection to Redis however it is deployed: commands routed by key, every call bounded. */
export interface RedisLink {
  /** Sends a command to the master that owns `key`. */
  send(key: string, args: readonly string[]): Promise<unknown>;
  /** The masters, in a stable order. */
  masters(): Promise<readonly RedisMaster[]>;
  close(): Promise<void>;
}

/** What a link tells the storage about its connection. */
export interface Health {
  failed(error: unknown): void;
  recovered(): void;
}

export const CONNECT_TIMEOUT_MS = 2_000;

// Exponential backoff from 50 ms, capped at 2 s: a restarted server is found again quickly.
export const backoff = (retries: number): number => Math.min(50 * 2 ** retries, 2_000);

export const socketOf = (target: RedisTarget) => ({
  connectTimeout: CONNECT_TIMEOUT_MS,
  reconnectStrategy: backoff,
  ...(target.tls ? { tls: true } : {}),
});

export const credentialsOf = (target: RedisTarget) => ({
  ...(target.username === undefined ? {} : { username: target.username }),
  ...(target.password === undefined ? {} : { password: target.password }),
});

/**
 * Connects `connect` now and again after each failure (with backoff) until it succeeds or the
 * link closes: a cluster or a Sentinel that finds no node at start gives up, unlike a single client.
 */
export function keepConnecting(
  connect: () => Promise<unknown>,
  health: Health,
  onConnected: () => void,
): { readonly connected: boolean; stop(): void } {
  let connected = false;
  let stopped = false;
  let retries = 0;
  let timer: NodeJS.Timeout | undefined;
  const attempt = (): void => {
    connect().then(
      () => {
        if (stopped) return;
        connected = true;
        health.recovered();
        onConnected();
      },
      (error: unknown) => {
        health.failed(error);
        if (stopped) return;
        timer = setTimeout(attempt, backoff(retries++));
        timer.unref?.();
      },
    );
  };
  attempt();
  return {
    get connected() {
      return connected;
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** One Redis server: the client reconnects by itself; with no offline queue a call fails at once while it is away. */
export function singleLink(driver: RedisDriver, target: RedisTarget, deadlines: Deadlines, health: Health): RedisLink {
  const [node] = target.nodes;
  const client = build<NodeClient>(driver.createClient, {
    socket: { host: node?.host, port: node?.port, ...socketOf(target) },
    ...credentialsOf(target),
    ...(target.database === undefined ? {} : { database: target.database }),
    disableOfflineQueue: true,
  });
  client.on('error', (error: unknown) => health.failed(error));
  client.on('ready', () => health.recovered());
  // connect() resolves when the server answers; until then the client retries by itself.
  client.connect().catch((error: unknown) => health.failed(error));
  const send = (args: readonly string[]) =>
    deadlines.within(args[0] ?? '', (signal) => client.sendCommand(args, { abortSignal: signal }));
  return {
    send: (_key, args) => send(args),
    masters: async () => [{ id: `${node?.host}:${node?.port}`, send }],
    async close() {
      if (!client.isOpen) return;
      if (client.isReady) await client.close();
      else client.destroy();
    },
  };
}

/**
 * The master that Redis Sentinel names. The client asks the sentinels where the master is,
 * listens to their `switch-master` messages, and asks again when its master stops answering.
 */
export function sentinelLink(
  driver: RedisDriver,
  target: RedisTarget,
  deadlines: Deadlines,
  health: Health,
): RedisLink {
  const sentinel = build<SentinelClient>(driver.createSentinel, {
    name: target.masterName,
    sentinelRootNodes: target.nodes.map(({ host, port }) => ({ host, port })),
    nodeClientOptions: {
      ...credentialsOf(target),
      ...(target.database === undefined ? {} : { database: target.database }),
      disableOfflineQueue: true,
      socket: socketOf(target),
    },
    sentinelClientOptions: { disableOfflineQueue: true, socket: socketOf(target) },
  });
  sentinel.on('error', (error: unknown) => health.failed(error));
  const connection = keepConnecting(
    () => sentinel.connect(),
    health,
    () => {},
  );
  const send = (args: readonly string[]) =>
    connection.connected
      ? deadlines.within(args[0] ?? '', (signal) => sentinel.sendCommand(false, args, { abortSignal: signal }))
      : Promise.reject(new StorageError(`store '${target.label}': no master found yet`));
  return {
    send: (_key, args) => send(args),
    masters: async () => [{ id: target.masterName ?? '', send }],
    async close() {
      connection.stop();
      if (!connection.connected) {
        sentinel.destroy();
        return;
      }
      await deadlines.within('close', () => sentinel.close(), CONNECT_TIMEOUT_MS).catch(() => sentinel.destroy());
    },
  };
}
