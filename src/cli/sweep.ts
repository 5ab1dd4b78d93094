import type { CliIo } from './io.js';
import type { CliStore } from './store.js';

/** Removes expired entries where the store keeps them until swept; Redis expires its own. */
export async function sweep(store: CliStore, io: CliIo): Promise<number> {
  if (!store.storage.sweep) {
    io.out(`removed 0 expired entries (${store.label} expires entries itself)`);
    return 0;
  }
  const removed = await store.storage.sweep();
  io.out(`removed ${removed} expired entries`);
  return 0;
}
