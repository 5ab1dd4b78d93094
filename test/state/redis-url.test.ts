import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { redisTarget } from '../../src/state/redis-url.js';

describe('reading a Redis store URL', () => {
  it('reads one server with credentials and a database', () => {
    expect(redisTarget('redis://app:p%40ss@cache.local:6380/2')).toMatchObject({
      kind: 'single',
      tls: false,
      nodes: [{ host: 'cache.local', port: 6380 }],
      username: 'app',
      password: 'p@ss',
      database: 2,
      label: 'redis://app:***@cache.local:6380/2',
    });
    expect(redisTarget(new URL('rediss://[::1]'))).toMatchObject({
      kind: 'single',
      tls: true,
      nodes: [{ host: '::1', port: 6379 }],
    });
  });

  it('reads a cluster from several seeds or from ?cluster=true', () => {
    expect(redisTarget('redis://h1:7000,h2:7001/')).toMatchObject({
      kind: 'cluster',
      nodes: [
        { host: 'h1', port: 7000 },
        { host: 'h2', port: 7001 },
      ],
    });
    expect(redisTarget('redis://h1:7000/?cluster=true').kind).toBe('cluster');
  });

  it('reads the sentinels and the name of their master', () => {
    expect(redisTarget('redis-sentinel://:secret@s1,s2:26380/mymaster/3')).toMatchObject({
      kind: 'sentinel',
      nodes: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26380 },
      ],
      masterName: 'mymaster',
      database: 3,
      password: 'secret',
      username: undefined,
    });
  });

  it.each([
    ['redis-sentinel://s1:26379', 'names no master'],
    ['redis-sentinel://s1:26379/a/1/x', 'names no master'],
    ['redis://h1:7000,h2:7001/3', 'only database 0'],
    ['redis://host/x', 'not a number'],
    ['redis://host:notaport', 'not a host or host:port'],
    ['redis://h1,,h2/', 'not a host or host:port'],
    ['memcache://host', 'is not a redis://'],
  ])('refuses %s with a ConfigError that says why', (url, why) => {
    expect(() => redisTarget(url)).toThrow(ConfigError);
    expect(() => redisTarget(url)).toThrow(why);
  });

  it('never shows the password in its refusal', () => {
    expect(() => redisTarget('redis://app:hunter2@host/x')).toThrow(/redis:\/\/app:\*\*\*@host\/x/);
    expect(() => redisTarget('redis://app:hunter2@host/x')).not.toThrow(/hunter2/);
  });
});
