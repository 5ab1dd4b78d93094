import { StorageError } from '../errors.js';
import type { Deadlines } from './redis-deadline.js';
import {
  build,
  CONNECT_TIMEOUT_MS,
  credentialsOf,
  type Health,
  keepConnecting,
  type NodeClient,
  type RedisDriver,
  type RedisLink,
  type SendOptions,
  socketOf,
} from './redis-link.js';
import type { RedisNode, RedisTarget } from './redis-url.js';

interface ShardNode {
  readonly host: string;
  readonly port: number;
  readonly client?: NodeClient;
}

interface Cluster {
  readonly masters: readonly ShardNode[];
  readonly slots: readonly ({ readonly master: ShardNode } | undefined)[];
  on(event: string, listener: (...args: never[]) => void): unknown;
  connect(): Promise<unknown>;
  sendCommand(key: string, readonly: boolean, args: readonly string[], options?: SendOptions): Promise<unknown>;
  nodeClient(node: ShardNode): Promise<NodeClient>;
  close(): Promise<unknown>;
  destroy(): void;
}

/** A range of slots and the address of its master, as `CLUSTER SLOTS` gives them. */
type SlotRange = [from: number, to: number, master: [host: string, port: number, ...rest: unknown[]], ...unknown[]];

/** At most one look at the slot map in this interval, however many calls fail. */
const CHECK_EVERY_MS = 500;

const addressOf = ({ host, port }: RedisNode) => `${host}:${port}`;

/**
 * A Redis Cluster whose failovers are followed. `@redis/client` 5 reads the slot map again
 * only on a MOVED or ASK reply, which a dead or hung master never sends; 6 also looks again
 * 5 s into a node's reconnection, but not for a node that hangs with its socket open. So on a
 * failed call, a timeout or a node's connection error, this asks the masters it can reach for
 * `CLUSTER SLOTS` (at most every 500 ms). When a range has a new master (a replica was
 * promoted), a fresh cluster client is connected from that map and takes over; the old one
 * finishes what it has in flight and is closed. Before the promotion the map is unchanged and
 * nothing is replaced; the calls to the lost master fail fast meanwhile (no offline queue).
 */
export function clusterLink(driver: RedisDriver, target: RedisTarget, deadlines: Deadlines, health: Health): RedisLink {
  const { within } = deadlines;
  const seeds = target.nodes.map(({ host, port }) => ({ host, port }));
  let current: Cluster | undefined;
  let closed = false;
  let lastCheck = 0;
  let checking = false;

  const create = (roots: readonly RedisNode[]): Cluster => {
    const cluster = build<Cluster>(driver.createCluster, {
      rootNodes: roots.map((socket) => ({ socket })),
      defaults: { ...credentialsOf(target), disableOfflineQueue: true, socket: socketOf(target) },
    });
    cluster.on('error', (error: unknown) => health.failed(error));
    cluster.on('node-error', (error: unknown) => {
      if (cluster !== current) return;
      health.failed(error);
      suspect();
    });
    cluster.on('node-ready', () => {
      if (cluster === current) health.recovered();
    });
    return cluster;
  };

  // The first connection: retried until a seed answers.
  const first = create(seeds);
  const connection = keepConnecting(
    () => first.connect(),
    health,
    () => {
      current = first;
    },
  );

  /** Whether `ranges` give some slot a master other than the one `cluster` sends it to. */
  const moved = (cluster: Cluster, ranges: readonly SlotRange[]) =>
    ranges.some(([from, , [host, port]]) => {
      const master = cluster.slots[from]?.master;
      return master === undefined || master.host !== host || master.port !== Number(port);
    });

  const replace = async (cluster: Cluster, ranges: readonly SlotRange[]) => {
    const roots = new Map<string, RedisNode>();
    for (const [, , [host, port]] of ranges) roots.set(`${host}:${port}`, { host, port: Number(port) });
    for (const seed of seeds) roots.set(addressOf(seed), seed);
    const fresh = create([...roots.values()]);
    try {
      await within('CLUSTER SLOTS', () => fresh.connect(), CONNECT_TIMEOUT_MS);
    } catch (error) {
      fresh.destroy();
      throw error;
    }
    if (closed || current !== cluster) {
      fresh.destroy();
      return;
    }
    current = fresh;
    health.recovered();
    // What the old client has in flight may still finish; a hung node's socket is cut after the timeout.
    within('close', () => cluster.close(), CONNECT_TIMEOUT_MS)
      .catch(() => {})
      .finally(() => cluster.destroy());
  };

  const check = async (cluster: Cluster) => {
    const ready = cluster.masters.flatMap((node) => (node.client?.isReady ? [node.client] : []));
    const maps = await Promise.all(
      ready.map((client) =>
        within('CLUSTER SLOTS', (signal) => client.sendCommand(['CLUSTER', 'SLOTS'], { abortSignal: signal })).catch(
          () => undefined,
        ),
      ),
    );
    const changed = maps.find((ranges): ranges is SlotRange[] => Array.isArray(ranges) && moved(cluster, ranges));
    if (changed) await replace(cluster, changed);
  };

  // Something failed: perhaps a master is gone. Look at the slot map, at most every 500 ms.
  const suspect = () => {
    const cluster = current;
    if (!cluster || closed || checking || Date.now() - lastCheck < CHECK_EVERY_MS) return;
    checking = true;
    lastCheck = Date.now();
    check(cluster)
      .catch((error: unknown) => health.failed(error))
      .finally(() => {
        checking = false;
      });
  };

  const notConnected = () => Promise.reject(new StorageError(`store '${target.label}': cluster not connected yet`));

  return {
    send(key, args) {
      const cluster = current;
      if (!cluster) return notConnected();
      return within(args[0] ?? '', (signal) => cluster.sendCommand(key, false, args, { abortSignal: signal })).catch(
        (error: unknown) => {
          suspect();
          throw error;
        },
      );
    },

    async masters() {
      const cluster = current;
      if (!cluster) return notConnected();
      return [...cluster.masters]
        .sort((a, b) => addressOf(a).localeCompare(addressOf(b)))
        .map((node) => ({
          id: addressOf(node),
          send: (args: readonly string[]) =>
            within(args[0] ?? '', (signal) =>
              cluster.nodeClient(node).then((client) => client.sendCommand(args, { abortSignal: signal })),
            ),
        }));
    },

    async close() {
      closed = true;
      connection.stop();
      const cluster = current;
      current = undefined;
      if (!cluster) {
        first.destroy();
        return;
      }
      await within('close', () => cluster.close(), CONNECT_TIMEOUT_MS).catch(() => cluster.destroy());
    },
  };
}
