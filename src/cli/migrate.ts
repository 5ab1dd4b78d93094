import type { StoredBin } from '../state/storage.js';
import type { CliIo } from './io.js';
import { oneLine } from './message.js';
import { type Counts, progress } from './progress.js';
import type { CliStore } from './store.js';
import { eachLimited, visitorIds } from './walk.js';

/** Visitors copied at once: enough to hide a network store's round trips, few enough to stay gentle on it. */
const CONCURRENCY = 16;

interface Tally {
  visitors: number;
  moved: number;
  present: number;
  expired: number;
  failed: number;
  lastFailure: unknown;
}

/**
 * Copies every bin of every visitor (the library's link records and back-references too: they
 * are bins) from one store to another, each with the lifetime it has left. A bin that the
 * target already holds is kept: the application may have written it there since it switched
 * stores, and that write is newer. Where the target has `add`, the check and the write are one
 * atomic step; where it has not, they are a `get` then a `set`, and a write the application
 * makes between the two is overwritten (the command says so when it starts). Nothing is
 * deleted from the source, so the command can be run again: what has arrived is skipped,
 * which is how an interrupted run resumes.
 */
export async function migrate(from: CliStore, to: CliStore, io: CliIo, now: () => number = Date.now): Promise<number> {
  const entries = from.need('entries', 'migrate');
  from.need('visitors', 'migrate');
  const target = to.storage;
  if (!target.add) {
    io.err(
      `note: ${to.label} has no atomic set-if-absent (Storage.add): a bin the application writes there between this command's check and its write can be overwritten`,
    );
  }
  const copy = async (visitorId: string, entry: StoredBin): Promise<'moved' | 'present' | 'expired'> => {
    const ttlMs = entry.expiresAt - now();
    if (!(ttlMs > 0)) return 'expired';
    if (target.add) return (await target.add(visitorId, entry.bin, entry.data, ttlMs)) ? 'moved' : 'present';
    if ((await target.get(visitorId, entry.bin)) !== undefined) return 'present';
    await target.set(visitorId, entry.bin, entry.data, ttlMs);
    return 'moved';
  };

  let total: number | undefined;
  if (io.interactive) {
    // A bar needs its length: one listing pass first, IDs only.
    total = 0;
    for await (const ids of visitorIds(from, 'migrate')) total += ids.length;
  }
  const tally: Tally = { visitors: 0, moved: 0, present: 0, expired: 0, failed: 0, lastFailure: undefined };
  const counts = (): Counts => ({
    visitors: tally.visitors,
    moved: tally.moved,
    skipped: tally.present + tally.expired,
    failed: tally.failed,
  });
  const bar = progress(io, total, now);
  const failed = (error: unknown, bins: number) => {
    tally.failed += bins;
    tally.lastFailure = error;
  };
  try {
    for await (const ids of visitorIds(from, 'migrate')) {
      await eachLimited(ids, CONCURRENCY, async (visitorId) => {
        let bins: StoredBin[];
        try {
          bins = await entries(visitorId);
        } catch (error) {
          failed(error, 1); // the visitor's bins could not be read: counted as one failure
          return;
        }
        await Promise.all(
          bins.map(async (entry) => {
            try {
              tally[await copy(visitorId, entry)]++;
            } catch (error) {
              failed(error, 1);
            }
          }),
        );
        tally.visitors++;
        bar.update(counts());
      });
    }
  } finally {
    bar.stop();
  }
  io.out(
    `migrated ${tally.visitors} visitors: ${tally.moved} bins moved, ${tally.present + tally.expired} skipped (${tally.present} already in the target, ${tally.expired} expired), ${tally.failed} failed`,
  );
  if (tally.failed > 0) {
    io.err(`visitor-state: ${tally.failed} bins failed to copy; the last error: ${oneLine(tally.lastFailure)}`);
    return 1;
  }
  return 0;
}
