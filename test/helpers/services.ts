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
  stop(): Promise<void>;
}

/**
 * A private redis-server on a free port, which a test may stop and start again to cause
 * a real outage. Extra arguments are passed through (e.g. `--cluster-enabled yes`).
 */
export async function privateRedis(dir: string, extra: readonly string[] = []): Promise<RedisProcess> {
  const port = await freePort();
  let child: ReturnType<typeof spawn> | undefined;
  const url = `redis://127.0.0.1:${port}`;
  const args = [
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
      child = spawn('redis-server', args, { stdio: 'ignore' });
      for (let i = 0; i < 100; i++) {
        if (await canConnect(url)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`redis-server on port ${port} did not start`);
    },
    async stop() {
      const running = child;
      child = undefined;
      if (!running || running.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        running.once('exit', () => resolve());
        running.kill('SIGKILL');
      });
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
  /** `redis://h1:p1,h2:p2,h3:p3/`, the form the Redis store takes for a cluster. */
  readonly seeds: string;
  readonly nodes: readonly RedisProcess[];
  stop(): Promise<void>;
}

/** A Redis Cluster of three masters, each a private redis-server under `dir`, joined and ready. */
export async function redisCluster(dir: string): Promise<RedisCluster> {
  const run = (args: string[]) =>
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
  const nodes: RedisProcess[] = [];
  for (let i = 0; i < 3; i++) {
    const nodeDir = `${dir}/cluster-${i}`;
    await import('node:fs/promises').then((fs) => fs.mkdir(nodeDir, { recursive: true }));
    nodes.push(await privateRedis(nodeDir, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf']));
  }
  const addresses = nodes.map((node) => `127.0.0.1:${node.port}`);
  await run(['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes']);
  for (const node of nodes) {
    for (let i = 0; ; i++) {
      if ((await run(['-p', String(node.port), 'cluster', 'info'])).includes('cluster_state:ok')) break;
      if (i === 100) throw new Error(`cluster node ${node.port} never reached cluster_state:ok`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    seeds: `redis://${addresses.join(',')}/`,
    nodes,
    stop: async () => {
      for (const node of nodes) await node.stop();
    },
  };
}
