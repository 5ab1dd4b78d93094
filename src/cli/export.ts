import type { CliIo } from './io.js';
import { linkSlotsOf } from './links.js';
import type { CliStore } from './store.js';
import { isRecord, readerOf } from './walk.js';

/**
 * Prints what the store holds about one visitor, for a subject access request: each of the
 * application's bins with its data and expiry, and how many users are linked to the visitor
 * (a link holds an HMAC of the user ID, never the ID itself).
 */
export async function exportVisitor(store: CliStore, visitorId: string, io: CliIo): Promise<number> {
  const entries = await readerOf(store, 'export')(visitorId);
  const bins = entries
    .filter((entry) => !isRecord(entry.bin))
    .sort((a, b) => (a.bin < b.bin ? -1 : a.bin > b.bin ? 1 : 0))
    .map((entry) => ({
      bin: entry.bin,
      data: entry.data,
      ...(Number.isFinite(entry.expiresAt) ? { expiresAt: new Date(entry.expiresAt).toISOString() } : {}),
    }));
  const links = (
    await linkSlotsOf(
      store,
      visitorId,
      entries.map((entry) => entry.bin),
    )
  ).length;
  io.out(JSON.stringify({ visitor: visitorId, bins, links }, null, 2));
  return 0;
}
