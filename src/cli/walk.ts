import type { Storage, StoredBin } from '../state/storage.js';
import type { CliStore } from './store.js';

/** How many visitors one page of a listing asks for. */
const PAGE = 500;

/**
 * Every visitor ID of the store, page by page, each once. A listing may give an ID twice (a
 * Redis SCAN does): the IDs seen are kept to drop repeats, some 100 bytes per visitor.
 */
export async function* visitorIds(store: CliStore, command: string): AsyncGenerator<string[]> {
  const visitors = store.need('visitors', command);
  const seen = new Set<string>();
  let next: string | undefined;
  do {
    const page = await visitors(next === undefined ? { limit: PAGE } : { next, limit: PAGE });
    const fresh = page.ids.filter((id) => !seen.has(id));
    for (const id of fresh) seen.add(id);
    if (fresh.length > 0) yield fresh;
    next = page.next;
  } while (next !== undefined);
}

/**
 * A visitor's bins with their expiry where the store lists them so (`entries`); else their
 * names (`bins`) and data, with the expiry unknown (`NaN`).
 */
export function readerOf(store: CliStore, command: string): (visitorId: string) => Promise<StoredBin[]> {
  const { storage } = store;
  if (storage.entries) return storage.entries.bind(storage);
  const bins = store.need('bins', command);
  return async (visitorId) => {
    const names = await bins(visitorId);
    const data = await getMany(storage, visitorId, names);
    return names.flatMap((bin, i) => (data[i] === undefined ? [] : [{ bin, data: data[i], expiresAt: Number.NaN }]));
  };
}

const getMany = (storage: Storage, visitorId: string, names: readonly string[]): Promise<unknown[]> =>
  storage.getMany ? storage.getMany(visitorId, names) : Promise.all(names.map((name) => storage.get(visitorId, name)));

/** Runs `work` on each item with at most `limit` at once. */
export async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

/** Bins whose names start with `@` are the library's own records (links, indexes), not the application's. */
export const isRecord = (bin: string): boolean => bin.startsWith('@');

/** The slot of a user's link record holds `@link` and nothing else. */
export const isLinkSlot = (bins: readonly StoredBin[]): boolean => bins.length === 1 && bins[0]?.bin === '@link';
