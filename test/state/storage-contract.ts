import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/crypto.js';
import type { Storage } from '../../src/state/storage.js';

export type MakeStorage = (namespace?: string) => Promise<Storage>;

const MINUTE = 60_000;
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/**
 * What every storage must do, as one describe block. `make(namespace)` opens a storage on
 * the shared server or file; two namespaces over the same place must not see each other.
 * Visitor IDs are random, so runs on a shared server do not collide.
 */
/** The optional methods of a storage. */
export type OptionalMethod = 'getMany' | 'bins' | 'add' | 'sweep';

export interface ContractOptions {
  cleanup?: (storage: Storage) => Promise<void>;
  /** The optional methods this storage does not have: their tests are not declared, and their absence is checked. */
  lacks?: readonly OptionalMethod[];
}

export function storageContract(name: string, make: MakeStorage, { cleanup, lacks = [] }: ContractOptions = {}) {
  const has = (method: OptionalMethod) => !lacks.includes(method);
  // Tests of an optional method exist only for storages that have it, so none is ever skipped.
  const itWith = (method: OptionalMethod, title: string, test: () => Promise<void>) => {
    if (has(method)) it(title, test);
  };

  describe(`${name} storage`, () => {
    const opened: Storage[] = [];
    let storage: Storage;

    const open = async (namespace?: string) => {
      const made = await make(namespace);
      opened.push(made);
      return made;
    };

    beforeAll(async () => {
      storage = await open();
    });

    afterAll(async () => {
      for (const made of opened) {
        if (cleanup) await cleanup(made);
        else await made.close?.();
      }
    });

    it('has exactly the optional methods it declares', () => {
      for (const method of ['getMany', 'bins', 'add', 'sweep'] as const) {
        expect(typeof storage[method], method).toBe(has(method) ? 'function' : 'undefined');
      }
    });

    it('gives undefined for a bin that was never set', async () => {
      expect(await storage.get(randomId(), 'absent')).toBeUndefined();
    });

    it('gives back what was set, as a fresh copy each time', async () => {
      const visitor = randomId();
      const data = { city: 'Lyon', tags: ['a', 'b'], nested: { n: 1 } };
      await storage.set(visitor, 'geo', data, MINUTE);
      const first = (await storage.get(visitor, 'geo')) as typeof data;
      expect(first).toEqual(data);
      first.tags.push('changed');
      first.nested.n = 2;
      expect(await storage.get(visitor, 'geo')).toEqual(data);
      data.city = 'Paris';
      expect(await storage.get(visitor, 'geo')).toEqual({ ...data, city: 'Lyon' });
    });

    it('replaces a bin that is set again', async () => {
      const visitor = randomId();
      await storage.set(visitor, 'choice', 'first', MINUTE);
      await storage.set(visitor, 'choice', { second: true }, MINUTE);
      expect(await storage.get(visitor, 'choice')).toEqual({ second: true });
    });

    it('forgets a deleted bin and keeps the others', async () => {
      const visitor = randomId();
      await storage.set(visitor, 'gone', 1, MINUTE);
      await storage.set(visitor, 'kept', 2, MINUTE);
      await storage.delete(visitor, 'gone');
      expect(await storage.get(visitor, 'gone')).toBeUndefined();
      expect(await storage.get(visitor, 'kept')).toBe(2);
      await storage.delete(visitor, 'never-there');
    });

    itWith('getMany', 'reads several bins in the order asked, absent ones as undefined', async () => {
      const visitor = randomId();
      await storage.set(visitor, 'b', 'bee', MINUTE);
      await storage.set(visitor, 'a', { a: 1 }, MINUTE);
      expect(await storage.getMany!(visitor, ['a', 'missing', 'b', 'a'])).toEqual([
        { a: 1 },
        undefined,
        'bee',
        { a: 1 },
      ]);
      expect(await storage.getMany!(visitor, [])).toEqual([]);
    });

    it('stops returning a bin once its lifetime is over, and keeps a long-lived one', async () => {
      const visitor = randomId();
      await storage.set(visitor, 'short', 'soon gone', 100);
      await storage.set(visitor, 'long', 'still here', MINUTE);
      expect(await storage.get(visitor, 'short')).toBe('soon gone');
      await sleep(250);
      expect(await storage.get(visitor, 'short')).toBeUndefined();
      expect(await storage.get(visitor, 'long')).toBe('still here');
      if (storage.getMany)
        expect(await storage.getMany!(visitor, ['short', 'long'])).toEqual([undefined, 'still here']);
      if (storage.bins) expect(await storage.bins!(visitor)).toEqual(['long']);
    });

    it('keeps two visitors with the same bin name apart', async () => {
      const alice = randomId();
      const bob = randomId();
      await storage.set(alice, 'geo', 'Lyon', MINUTE);
      await storage.set(bob, 'geo', 'Oslo', MINUTE);
      await storage.delete(bob, 'geo');
      expect(await storage.get(alice, 'geo')).toBe('Lyon');
      expect(await storage.get(bob, 'geo')).toBeUndefined();
    });

    it('keeps two namespaces over the same store apart', async () => {
      const one = await open(`ns-${randomId()}`);
      const two = await open(`ns-${randomId()}`);
      const visitor = randomId();
      await one.set(visitor, 'geo', 'Lyon', MINUTE);
      expect(await two.get(visitor, 'geo')).toBeUndefined();
      await two.set(visitor, 'geo', 'Oslo', MINUTE);
      expect(await one.get(visitor, 'geo')).toBe('Lyon');
      await two.delete(visitor, 'geo');
      expect(await one.get(visitor, 'geo')).toBe('Lyon');
      if (one.bins && two.bins) {
        expect(await one.bins(visitor)).toEqual(['geo']);
        expect(await two.bins(visitor)).toEqual([]);
      }
    });

    itWith('bins', "lists a visitor's bins and no one else's", async () => {
      const visitor = randomId();
      const other = randomId();
      // Glob characters in a bin name or visitor ID must not widen the match.
      await storage.set(visitor, 'mymod:geo', 1, MINUTE);
      await storage.set(visitor, 'ab*[x]?', 2, MINUTE);
      await storage.set(other, 'other', 3, MINUTE);
      expect((await storage.bins!(visitor)).sort()).toEqual(['ab*[x]?', 'mymod:geo']);
      expect(await storage.bins!(randomId())).toEqual([]);
      await storage.delete(visitor, 'mymod:geo');
      expect(await storage.bins!(visitor)).toEqual(['ab*[x]?']);
    });

    itWith('add', 'adds a bin only when it is absent or expired, and says whether it did', async () => {
      const visitor = randomId();
      expect(await storage.add!(visitor, 'claim', 'first', MINUTE)).toBe(true);
      expect(await storage.add!(visitor, 'claim', 'second', MINUTE)).toBe(false);
      expect(await storage.get(visitor, 'claim')).toBe('first');
      await storage.set(visitor, 'short', 'old', 50);
      await sleep(120);
      expect(await storage.add!(visitor, 'short', 'new', MINUTE)).toBe(true);
      expect(await storage.get(visitor, 'short')).toBe('new');
      const racers = await Promise.all(Array.from({ length: 8 }, (_, i) => storage.add!(visitor, 'race', i, MINUTE)));
      expect(racers.filter(Boolean)).toHaveLength(1);
      expect(await storage.get(visitor, 'race')).toBe(racers.indexOf(true));
    });

    itWith('sweep', 'sweeps away expired entries, counts them, and leaves live ones', async () => {
      const visitor = randomId();
      for (const bin of ['x', 'y', 'z']) await storage.set(visitor, bin, bin, 50);
      await storage.set(visitor, 'live', 'stays', MINUTE);
      await sleep(120);
      // Other tests may share the store and leave expired entries of their own.
      expect(await storage.sweep!()).toBeGreaterThanOrEqual(3);
      expect(await storage.get(visitor, 'x')).toBeUndefined();
      expect(await storage.get(visitor, 'live')).toBe('stays');
      if (has('bins')) expect(await storage.bins!(visitor)).toEqual(['live']);
    });

    it('round-trips every kind of JSON value', async () => {
      const visitor = randomId();
      const values: Record<string, unknown> = {
        object: { a: { b: { c: [1, { d: null }] } }, empty: {} },
        array: [1, 'two', false, null, [], {}],
        unicode: 'Zürich ☕ 東京 🚀 \u0000 \ud800 "quoted" \\ \n',
        integer: 42,
        negative: -0.5,
        large: 1.7976931348623157e308,
        zero: 0,
        true: true,
        false: false,
        null: null,
        emptyString: '',
      };
      for (const [bin, value] of Object.entries(values)) await storage.set(visitor, bin, value, MINUTE);
      for (const [bin, value] of Object.entries(values)) expect(await storage.get(visitor, bin)).toEqual(value);
      if (storage.getMany) {
        expect(await storage.getMany!(visitor, Object.keys(values))).toEqual(Object.values(values));
      }
    });
  });
}
