import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { randomId } from '../../src/crypto.js';
import { ConfigError, StorageError } from '../../src/errors.js';
import { createVisitorState } from '../../src/index.js';
import { memoryStorage } from '../../src/state/memory-storage.js';
import { headersOnlyResponse } from '../helpers/http.js';

const MINUTE = 60_000;
const KiB = 1024;
const MiB = 1024 * KiB;

/** A clock the test moves by hand. */
function manualClock(start = 1_800_000_000_000) {
  let at = start;
  return { now: () => at, advance: (ms: number) => (at += ms) };
}

describe('memory storage bound in bytes', () => {
  it('drops the visitors least recently used once the bytes would pass maxBytes', async () => {
    const storage = memoryStorage({ maxBytes: 20 * KiB });
    const ids = Array.from({ length: 30 }, () => randomId());
    const blob = 'x'.repeat(KiB);
    for (const id of ids.slice(0, 10)) await storage.set(id, 'blob', blob, MINUTE);
    // The first visitor is read, so it is the most recently used of the ten.
    expect(await storage.get(ids[0] as string, 'blob')).toBe(blob);
    for (const id of ids.slice(10)) await storage.set(id, 'blob', blob, MINUTE);

    const kept = [];
    for (const id of ids) if (storage.peek?.(id, 'blob') !== undefined) kept.push(id);
    // Each bin counts about 1.2 KiB with its overheads: some 16 fit in 20 KiB.
    expect(kept.length).toBeGreaterThan(10);
    expect(kept.length).toBeLessThan(20);
    // The newest are kept, the oldest dropped; the one read survived visitors written before it was read.
    expect(kept).toContain(ids[29]);
    expect(kept).not.toContain(ids[1]);
    expect(kept.indexOf(ids[0] as string)).toBe(kept.includes(ids[0] as string) ? 0 : -1);
  });

  it("makes room inside one visitor by dropping that visitor's oldest bins", async () => {
    const storage = memoryStorage({ maxBytes: 8 * KiB });
    const visitor = randomId();
    for (let i = 0; i < 20; i++) await storage.set(visitor, `b${i}`, 'y'.repeat(KiB), MINUTE);
    const bins = (await storage.bins?.(visitor)) ?? [];
    expect(bins.length).toBeGreaterThan(3);
    expect(bins.length).toBeLessThan(8);
    expect(bins).toContain('b19');
    expect(bins).not.toContain('b0');
  });

  it('refuses one bin larger than the whole store, and keeps what it held', async () => {
    const storage = memoryStorage({ maxBytes: 4 * KiB });
    const visitor = randomId();
    await storage.set(visitor, 'small', 'fits', MINUTE);
    await expect(storage.set(visitor, 'big', 'z'.repeat(8 * KiB), MINUTE)).rejects.toBeInstanceOf(StorageError);
    expect(await storage.get(visitor, 'small')).toBe('fits');
    expect(await storage.get(visitor, 'big')).toBeUndefined();
  });

  it('refuses a bound that is not a positive number', () => {
    expect(() => memoryStorage({ maxBytes: 0 })).toThrow(ConfigError);
    expect(() => memoryStorage({ maxEntries: Number.NaN })).toThrow(ConfigError);
  });
});

describe('memory storage expiry', () => {
  it('follows the clock it is given, and removes what expired', async () => {
    const clock = manualClock();
    const storage = memoryStorage({ now: clock.now });
    const visitor = randomId();
    await storage.set(visitor, 'short', 1, 1_000);
    await storage.set(visitor, 'long', 2, 10 * MINUTE);
    const other = randomId();
    await storage.set(other, 'short', 3, 1_000);
    clock.advance(999);
    expect(await storage.get(visitor, 'short')).toBe(1);
    clock.advance(1);
    expect(await storage.get(visitor, 'short')).toBeUndefined();
    expect(await storage.bins?.(visitor)).toEqual(['long']);
    expect(await storage.entries?.(visitor)).toEqual([
      { bin: 'long', data: 2, expiresAt: clock.now() - 1_000 + 10 * MINUTE },
    ]);
    // The other visitor's expired bin was never read: the sweep removes it, and the visitor with it.
    expect(await storage.sweep?.()).toBe(1);
    expect((await storage.visitors?.())?.ids).toEqual([visitor]);
    expect(await storage.add?.(other, 'short', 4, 1_000)).toBe(true);
  });
});

describe('memory storage abilities', () => {
  it('peeks synchronously, handing out a copy', async () => {
    const storage = memoryStorage();
    const visitor = randomId();
    await storage.set(visitor, 'geo', { city: 'Lyon', tags: ['a'] }, MINUTE);
    const seen = storage.peek?.(visitor, 'geo') as { city: string; tags: string[] };
    expect(seen).toEqual({ city: 'Lyon', tags: ['a'] });
    seen.tags.push('changed');
    expect(storage.peek?.(visitor, 'geo')).toEqual({ city: 'Lyon', tags: ['a'] });
    expect(storage.peek?.(visitor, 'absent')).toBeUndefined();
  });

  it('updates atomically, deletes on undefined, and writes nothing when next throws', async () => {
    const storage = memoryStorage();
    const visitor = randomId();
    const increments = Array.from({ length: 500 }, () =>
      storage.update?.(visitor, 'n', (n) => ((n as number | undefined) ?? 0) + 1, MINUTE),
    );
    const results = await Promise.all(increments);
    expect(new Set(results).size).toBe(500);
    expect(await storage.get(visitor, 'n')).toBe(500);

    await storage.set(visitor, 'obj', { list: [1] }, MINUTE);
    const stored = await storage.update?.(
      visitor,
      'obj',
      (current) => {
        const copy = current as { list: number[] };
        copy.list.push(2);
        return copy;
      },
      MINUTE,
    );
    expect(stored).toEqual({ list: [1, 2] });
    (stored as { list: number[] }).list.push(99);
    expect(await storage.get(visitor, 'obj')).toEqual({ list: [1, 2] });

    const failure = new Error('no');
    await expect(
      storage.update?.(
        visitor,
        'obj',
        () => {
          throw failure;
        },
        MINUTE,
      ),
    ).rejects.toBe(failure);
    expect(await storage.get(visitor, 'obj')).toEqual({ list: [1, 2] });

    expect(await storage.update?.(visitor, 'obj', () => undefined, MINUTE)).toBeUndefined();
    expect(await storage.get(visitor, 'obj')).toBeUndefined();
  });

  it('lists visitors page by page, each once', async () => {
    const storage = memoryStorage();
    const ids = Array.from({ length: 25 }, () => randomId());
    for (const id of ids) await storage.set(id, '@bins', ['x'], MINUTE);
    const seen: string[] = [];
    let next: string | undefined;
    let pages = 0;
    do {
      const page = await storage.visitors!({ limit: 10, ...(next === undefined ? {} : { next }) });
      seen.push(...page.ids);
      // Reading a visitor between pages moves it in the eviction order, not in the listing.
      if (page.ids[0]) await storage.get(page.ids[0], '@bins');
      next = page.next;
      pages++;
    } while (next !== undefined);
    expect(pages).toBe(3);
    expect(seen.sort()).toEqual([...ids].sort());
  });
});

describe('memory store through createVisitorState', () => {
  it('keeps the heap bounded while 20,000 cookie-less visitors each store a 60 KiB bin', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const visitors = createVisitorState({ secret: 'memory-test-secret-0123456789abcdefghij' });
    const heap = () => {
      gc();
      return process.memoryUsage().heapUsed;
    };
    const before = heap();
    let peak = before;
    const cookies: string[] = [];
    const VISITORS = 20_000;
    for (let i = 0; i < VISITORS; i++) {
      const response = headersOnlyResponse();
      const visitor = await visitors.resolve({ headers: {}, socket: { remoteAddress: '203.0.113.9' } }, response);
      // 60 KiB of JSON, different for every visitor.
      await visitor.cache.set('mymod:blob', { i, pad: `${i}`.padEnd(60 * KiB - 32, 'x') });
      if (i === 0 || i === VISITORS - 1) cookies.push(response.cookie());
      if (i % 2_000 === 1_999) peak = Math.max(peak, heap());
    }
    const after = heap();
    const written = (VISITORS * 60 * KiB) / MiB;
    console.log(
      `memory store, ${VISITORS} visitors x 60 KiB (${written.toFixed(0)} MiB written): heap ${(before / MiB).toFixed(0)} MiB before, ` +
        `${(peak / MiB).toFixed(0)} MiB at most, ${(after / MiB).toFixed(0)} MiB after (default maxBytes 64 MiB)`,
    );
    // Unbounded, the heap would grow by all that was written (1,172 MiB); the default bound is 64 MiB.
    expect(after - before).toBeLessThan(200 * MiB);
    expect(peak - before).toBeLessThan(200 * MiB);

    // Least recently used goes first: the first visitor's bin is gone, the last one's is kept.
    const [firstCookie, lastCookie] = cookies as [string, string];
    const returning = (cookie: string) => visitors.resolve({ headers: { cookie } }, headersOnlyResponse());
    expect(await (await returning(firstCookie)).cache.get('mymod:blob')).toBeUndefined();
    expect(await (await returning(lastCookie)).cache.get('mymod:blob')).toMatchObject({ i: VISITORS - 1 });
    await visitors.close();
  }, 180_000);
});
