import { spawn, spawnSync } from 'node:child_process';
import { createServer, Socket } from 'node:net';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const inCI = process.env.CI === 'true';

/**
 * Whether a service or program a test file needs is there. When it is not, a developer's
 * run skips the file with the printed reason; under CI=true the file fails instead, since
 * CI must never pass by skipping.
 */
export async function need(what: string, check: () => Promise<boolean> | boolean, howToGet: string): Promise<boolean> {
  let ok = false;
  try {
    ok = await check();
  } catch {
    ok = false;
  }
  if (ok) return true;
  const reason = `${what} is not reachable: ${howToGet}`;
  if (inCI) throw new Error(`CI=true and ${reason}`);
  console.warn(`skipped: ${reason}`);
  return false;
}

/** Whether a TCP connection to host:port opens within a second. */
export function canConnect(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(Number(port), hostname.replace(/^\[|\]$/g, ''), () => done(true));
  });
}

/** Whether a program is on the PATH. */
export function hasProgram(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

export const needRedis = () =>
  need('Redis', () => canConnect(REDIS_URL), `start it with: redis-server --daemonize yes --port 6379 --save ""`);

export const needPostgres = () =>
  need(
    'PostgreSQL',
    () => canConnect(DATABASE_URL),
    'start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start',
  );

/** A TCP port that was free a moment ago, on the loopback interface. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export interface RedisProcess {
  readonly port: number;
  readonly url: string;
  start(): Promise<void>;
  /** Kills the server (SIGKILL), stopped or not. */
  stop(): Promise<void>;
  /** Sends a signal to the running server: SIGSTOP hangs it with its sockets open. */
  signal(signal: NodeJS.Signals): void;
}

// Every server a test starts, killed when the test process ends even if its afterAll never ran.
const running = new Set<ReturnType<typeof spawn>>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * A private redis-server on a free port, which a test may stop and start again to cause
 * a real outage. Extra arguments are passed through (e.g. `--cluster-enabled yes`).
 */
export async function privateRedis(
  dir: string,
  extra: readonly string[] = [],
  configFile?: string,
): Promise<RedisProcess> {
  const port = await freePort();
  let child: ReturnType<typeof spawn> | undefined;
  const url = `redis://127.0.0.1:${port}`;
  const args = [
    // A configuration file, when there is one, must come first.
    ...(configFile === undefined ? [] : [configFile]),
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    ...extra,
  ];
  const proc: RedisProcess = {
    port,
    url,
    async start() {
      const started = spawn('redis-server', args, { stdio: 'ignore' });
      child = started;
      running.add(started);
      started.once('exit', () => running.delete(started));
      for (let i = 0; i < 100; i++) {
        if (await canConnect(url)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`redis-server on port ${port} did not start`);
    },
    async stop() {
      const stopping = child;
      child = undefined;
      if (!stopping || stopping.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        stopping.once('exit', () => resolve());
        stopping.kill('SIGKILL');
      });
    },
    signal(signal) {
      child?.kill(signal);
    },
  };
  await proc.start();
  return proc;
}

export const needRedisServer = () =>
  need('redis-server', () => hasProgram('redis-server'), 'install it with: apt-get install -y redis-server');

export const needRedisCluster = async () =>
  (await needRedisServer()) &&
  (await need('redis-cli', () => hasProgram('redis-cli'), 'install it with: apt-get install -y redis-tools'));

export interface RedisCluster {
  /** `redis://h1:p1,h2:p2,h3:p3/`, the form the Redis store takes for a cluster (the masters at start). */
  readonly seeds: string;
  /** Every node, masters first as they were at start. */
  readonly nodes: readonly RedisProcess[];
  /** The masters at start, and for each its replica (when the cluster has replicas). */
  readonly shards: readonly { readonly master: RedisProcess; readonly replica?: RedisProcess }[];
  stop(): Promise<void>;
}

const redisCli = (args: readonly string[]) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`redis-cli ${args.join(' ')}: ${code}`)),
    );
  });

/** One line of `CLUSTER NODES`, as a node sees it. */
export interface ClusterNodeView {
  readonly id: string;
  readonly port: number;
  readonly flags: readonly string[];
  /** The ID of its master; '-' for a master. */
  readonly masterId: string;
}

/** What the node on `port` thinks of the cluster (`CLUSTER NODES`). */
export async function clusterNodes(port: number): Promise<ClusterNodeView[]> {
  const out = await redisCli(['-p', String(port), 'cluster', 'nodes']);
  return out
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [id = '', address = '', flags = '', masterId = ''] = line.split(' ');
      return { id, port: Number(address.split('@')[0]?.split(':')[1]), flags: flags.split(','), masterId };
    });
}

/**
 * A Redis Cluster of three masters (and, with `replicas: 1`, a replica for each), every node a
 * private redis-server under `dir`, joined and ready; with replicas, each replica in sync.
 */
export async function redisCluster(
  dir: string,
  { replicas = 0, nodeTimeoutMs = 15_000 }: { replicas?: 0 | 1; nodeTimeoutMs?: number } = {},
): Promise<RedisCluster> {
  const nodes: RedisProcess[] = [];
  const stop = async () => {
    for (const node of nodes) await node.stop();
  };
  try {
    const { mkdir } = await import('node:fs/promises');
    for (let i = 0; i < 3 * (1 + replicas); i++) {
      const nodeDir = `${dir}/cluster-${i}`;
      await mkdir(nodeDir, { recursive: true });
      nodes.push(
        await privateRedis(nodeDir, [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf',
          '--cluster-node-timeout',
          String(nodeTimeoutMs),
        ]),
      );
    }
    const addresses = nodes.map((node) => `127.0.0.1:${node.port}`);
    // With replicas, redis-cli makes the first three the masters.
    await redisCli(['--cluster', 'create', ...addresses, '--cluster-replicas', String(replicas), '--cluster-yes']);
    const byPort = new Map(nodes.map((node) => [node.port, node]));
    let shards: RedisCluster['shards'] = [];
    for (let i = 0; ; i++) {
      const infos = await Promise.all(nodes.map((node) => redisCli(['-p', String(node.port), 'cluster', 'info'])));
      const views = await clusterNodes(nodes[0]!.port);
      const masters = views.filter((view) => view.flags.includes('master'));
      shards = masters.map((master) => {
        const replica = views.find((view) => view.masterId === master.id);
        return { master: byPort.get(master.port)!, ...(replica ? { replica: byPort.get(replica.port)! } : {}) };
      });
      const synced =
        replicas === 0 ||
        (
          await Promise.all(
            shards.map(({ replica }) => redisCli(['-p', String(replica?.port ?? 0), 'info', 'replication'])),
          )
        ).every((info) => info.includes('master_link_status:up'));
      if (infos.every((info) => info.includes('cluster_state:ok')) && shards.length === 3 && synced) break;
      if (i === 150) throw new Error('the cluster never reached cluster_state:ok with its replicas in sync');
      await new Promise((r) => setTimeout(r, 100));
    }
    return {
      seeds: `redis://${shards.map(({ master }) => `127.0.0.1:${master.port}`).join(',')}/`,
      nodes,
      shards,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

export interface RedisSentinelSet {
  /** `redis-sentinel://s1,s2,s3/mymaster`. */
  readonly url: string;
  readonly masterName: string;
  readonly master: RedisProcess;
  readonly replica: RedisProcess;
  readonly sentinels: readonly RedisProcess[];
  /** The port of the server the sentinels now call the master. */
  masterPort(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * One master, one replica and three sentinels (quorum 2), all private servers under `dir`,
 * each sentinel knowing the others and the replica. The master is taken for down after
 * `downAfterMs` without an answer.
 */
export async function redisSentinel(dir: string, { downAfterMs = 1_000 } = {}): Promise<RedisSentinelSet> {
  const { mkdir, writeFile } = await import('node:fs/promises');
  const started: RedisProcess[] = [];
  const stop = async () => {
    for (const server of started) await server.stop();
  };
  const masterName = 'mymaster';
  try {
    await mkdir(`${dir}/master`, { recursive: true });
    await mkdir(`${dir}/replica`, { recursive: true });
    const master = await privateRedis(`${dir}/master`);
    started.push(master);
    const replica = await privateRedis(`${dir}/replica`, ['--replicaof', '127.0.0.1', String(master.port)]);
    started.push(replica);
    const sentinels: RedisProcess[] = [];
    for (let i = 0; i < 3; i++) {
      const sentinelDir = `${dir}/sentinel-${i}`;
      await mkdir(sentinelDir, { recursive: true });
      const config = `${sentinelDir}/sentinel.conf`;
      // Sentinel rewrites its configuration file as it learns: it must be a file of its own.
      await writeFile(
        config,
        [
          `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 2`,
          `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
          `sentinel failover-timeout ${masterName} 10000`,
          `sentinel parallel-syncs ${masterName} 1`,
          '',
        ].join('\n'),
      );
      const sentinel = await privateRedis(sentinelDir, ['--sentinel'], config);
      started.push(sentinel);
      sentinels.push(sentinel);
    }
    const ask = (port: number, ...args: string[]) => redisCli(['-p', String(port), ...args]);
    for (let i = 0; ; i++) {
      const views = await Promise.all(
        sentinels.map(async (sentinel) => ({
          others: (await ask(sentinel.port, 'sentinel', 'sentinels', masterName))
            .split('\n')
            .filter((l) => l === 'name').length,
          replicas: (await ask(sentinel.port, 'sentinel', 'replicas', masterName)).includes(String(replica.port)),
        })),
      );
      if (views.every((view) => view.others === 2 && view.replicas)) break;
      if (i === 150) throw new Error('the sentinels never found each other and the replica');
      await new Promise((r) => setTimeout(r, 100));
    }
    return {
      url: `redis-sentinel://${sentinels.map((sentinel) => `127.0.0.1:${sentinel.port}`).join(',')}/${masterName}`,
      masterName,
      master,
      replica,
      sentinels,
      async masterPort() {
        const out = await ask(sentinels[0]!.port, 'sentinel', 'get-master-addr-by-name', masterName);
        return Number(out.split('\n')[1]);
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
