import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { loadPeer } from '../../src/state/load-peer.js';

describe('loading a store driver by its name', () => {
  it('imports an installed driver', async () => {
    const pg = await loadPeer<{ default: { Pool: unknown } }>('pg', 'postgres://localhost/test');
    expect(typeof pg.default.Pool).toBe('function');
  });

  it('says what to install when the driver is missing, without the password', async () => {
    const name = 'visitor-state-driver-that-is-not-installed';
    const error = await loadPeer(name, 'redis://app:s3cret@cache:6379').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe(
      `store 'redis://app:***@cache:6379' needs the package ${name}: npm install ${name}`,
    );
  });
});
