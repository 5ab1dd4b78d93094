import { ConfigError } from '../errors.js';
import { describeStore } from './load-peer.js';

export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

/** Where a Redis store lives, read from its URL. */
export interface RedisTarget {
  readonly kind: 'single' | 'cluster' | 'sentinel';
  readonly tls: boolean;
  /** The server, the cluster's seed nodes, or the sentinels. */
  readonly nodes: readonly RedisNode[];
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** The database number of a single server or of a Sentinel's master. */
  readonly database: number | undefined;
  /** The master's name, for Sentinel. */
  readonly masterName: string | undefined;
  /** The URL the password is masked in, for messages. */
  readonly label: string;
}

const SCHEMES: Record<string, { tls: boolean; sentinel: boolean; port: number }> = {
  'redis:': { tls: false, sentinel: false, port: 6379 },
  'rediss:': { tls: true, sentinel: false, port: 6379 },
  'redis-sentinel:': { tls: false, sentinel: true, port: 26379 },
};

const nodeOf = (text: string, port: number, label: string): RedisNode => {
  let parsed: URL;
  try {
    // The http: parser reads bracketed IPv6 and ports; the scheme itself does not matter here.
    parsed = new URL(`http://${text}`);
  } catch (error) {
    throw new ConfigError(`store '${label}': '${text}' is not a host or host:port`, { cause: error });
  }
  if (parsed.pathname !== '/' || parsed.username !== '' || text === '')
    throw new ConfigError(`store '${label}': '${text}' is not a host or host:port`);
  return { host: parsed.hostname.replace(/^\[|\]$/g, ''), port: parsed.port === '' ? port : Number(parsed.port) };
};

const databaseOf = (text: string, label: string): number | undefined => {
  if (text === '') return undefined;
  if (!/^\d{1,5}$/.test(text)) throw new ConfigError(`store '${label}': the database '${text}' is not a number`);
  return Number(text);
};

/**
 * Reads the Redis store URLs:
 * - `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS): one server;
 * - `redis://h1:7000,h2:7001/`, or one seed with `?cluster=true`: a Redis Cluster;
 * - `redis-sentinel://[user:password@]s1:26379,s2:26379/mymaster[/db]`: the master that
 *   the sentinels name `mymaster`; the user and password are those of the Redis nodes.
 * Several hosts with ports are not a valid WHATWG URL, so the text is read here.
 */
export function redisTarget(input: URL | string): RedisTarget {
  const text = String(input);
  const label = describeStore(text);
  // No backtracking: each group stops at a character the next one starts with.
  const match = /^([a-z-]+:)\/\/(?:([^/?#@]*)@)?([^/?#]*)([^?#]*)(\?[^#]*)?(?:#.*)?$/i.exec(text);
  const scheme = SCHEMES[match?.[1]?.toLowerCase() ?? ''];
  if (!match || !scheme)
    throw new ConfigError(`store '${label}' is not a redis://, rediss:// or redis-sentinel:// URL`);
  const [, , auth, hosts = '', path = '', query = ''] = match;
  const colon = auth?.indexOf(':') ?? -1;
  const user = auth === undefined ? '' : colon < 0 ? auth : auth.slice(0, colon);
  const pass = auth === undefined || colon < 0 ? '' : auth.slice(colon + 1);
  const nodes = (hosts === '' ? ['127.0.0.1'] : hosts.split(',')).map((host) => nodeOf(host, scheme.port, label));
  const segments = path.split('/').filter((segment) => segment !== '');
  const base = {
    tls: scheme.tls,
    nodes,
    username: user === '' ? undefined : decodeURIComponent(user),
    password: pass === '' ? undefined : decodeURIComponent(pass),
    label,
  };
  if (scheme.sentinel) {
    const [masterName, db = '', ...rest] = segments;
    if (masterName === undefined || rest.length > 0)
      throw new ConfigError(
        `store '${label}' names no master: use redis-sentinel://sentinel1:26379,sentinel2:26379/mymaster`,
      );
    return { ...base, kind: 'sentinel', masterName: decodeURIComponent(masterName), database: databaseOf(db, label) };
  }
  if (segments.length > 1) throw new ConfigError(`store '${label}': the path must be a database number or empty`);
  const cluster = nodes.length > 1 || new URLSearchParams(query).get('cluster') === 'true';
  const database = databaseOf(segments[0] ?? '', label);
  if (cluster && database !== undefined && database !== 0)
    throw new ConfigError(`store '${label}': a Redis Cluster has only database 0`);
  return { ...base, kind: cluster ? 'cluster' : 'single', masterName: undefined, database };
}
