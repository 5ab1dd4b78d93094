import { describe, expect, it } from 'vitest';
import { StorageError } from '../../src/errors.js';
import { deadlines } from '../../src/state/redis-deadline.js';

const never = () => new Promise<never>(() => {});
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

describe('deadlines of Redis calls', () => {
  it('hands back what a call resolves to, and the error it rejects with', async () => {
    const { within } = deadlines(1_000, 'redis://cache:6379');
    await expect(within('GET', async () => 'text')).resolves.toBe('text');
    await expect(within('GET', async () => Promise.reject(new RangeError('no')))).rejects.toThrow(RangeError);
    await expect(
      within('GET', () => {
        throw new TypeError('thrown');
      }),
    ).rejects.toThrow(TypeError);
  });

  it('fails a call that outlives its timeout, naming the store and the command, and aborts its signal', async () => {
    const { within } = deadlines(40, 'redis://cache:6379');
    let signal: AbortSignal | undefined;
    const call = within('SET', (given) => {
      signal = given;
      return never();
    });
    await expect(call).rejects.toThrow(new StorageError("store 'redis://cache:6379' did not answer SET within 40 ms"));
    expect(signal?.aborted).toBe(true);
  });

  it('aborts no call before its own deadline, whatever other calls time out meanwhile', async () => {
    const { within } = deadlines(40, 'redis://cache:6379');
    const signals: AbortSignal[] = [];
    const short = within('GET', (signal) => {
      signals.push(signal);
      return never();
    });
    const long = within(
      'CLUSTER SLOTS',
      (signal) => {
        signals.push(signal);
        return never();
      },
      2_000,
    );
    const answered = within('GET', async (signal) => {
      signals.push(signal);
      await sleep(20);
      return 'text';
    });
    await expect(answered).resolves.toBe('text');
    await expect(short).rejects.toThrow('did not answer GET within 40 ms');
    expect(signals[0]?.aborted).toBe(true);
    expect(signals[1]?.aborted).toBe(false);
    await sleep(100);
    expect(signals[1]?.aborted).toBe(false);
    await expect(long).rejects.toThrow('did not answer CLUSTER SLOTS within 2000 ms');
    expect(signals[1]?.aborted).toBe(true);
  });
});
