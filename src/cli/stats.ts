import type { CliIo } from './io.js';
import type { CliStore } from './store.js';
import { eachLimited, isLinkSlot, isRecord, readerOf, visitorIds } from './walk.js';

/** What a store holds in one namespace. */
export interface Stats {
  /** Visitors with at least one bin (user link records not counted). */
  visitors: number;
  /** The application's bins (the library's `@` records not counted). */
  bins: number;
  /** Bytes of the JSON text of those bins. */
  bytes: number;
}

/** Counts visitors, bins and bytes: one pass over every visitor's bins. */
export async function stats(store: CliStore, json: boolean, io: CliIo): Promise<number> {
  store.need('visitors', 'stats');
  const read = readerOf(store, 'stats');
  const totals: Stats = { visitors: 0, bins: 0, bytes: 0 };
  let links = 0;
  for await (const ids of visitorIds(store, 'stats')) {
    await eachLimited(ids, 16, async (id) => {
      const entries = await read(id);
      if (isLinkSlot(entries)) {
        links++;
        return;
      }
      if (entries.length === 0) return;
      totals.visitors++;
      for (const entry of entries) {
        if (isRecord(entry.bin)) continue;
        totals.bins++;
        totals.bytes += Buffer.byteLength(JSON.stringify(entry.data));
      }
    });
  }
  if (json) io.out(JSON.stringify(totals));
  else io.out(`visitors ${totals.visitors}\nbins     ${totals.bins}\nbytes    ${totals.bytes}\nlinks    ${links}`);
  return 0;
}
