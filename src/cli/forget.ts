import type { CliIo } from './io.js';
import { LINK, linkSlot, linkSlotsOf } from './links.js';
import type { CliStore } from './store.js';
import { UsageError } from './usage.js';
import { isRecord, readerOf } from './walk.js';

/** What one erasure removed. */
export interface Erased {
  readonly bins: number;
  readonly links: number;
}

/**
 * The erasure `visitor.forget()` makes: every link that points at the visitor (found through
 * its `@link:` back-references, and removed only while it still names this visitor), then
 * every bin of the visitor, the library's records included.
 */
export async function erase(store: CliStore, visitorId: string): Promise<Erased> {
  const { storage } = store;
  const names = storage.entries
    ? (await storage.entries(visitorId)).map((entry) => entry.bin)
    : await store.need('bins', 'forget')(visitorId);
  let links = 0;
  for (const slot of await linkSlotsOf(store, visitorId, names)) {
    if ((await storage.get(slot, LINK)) === visitorId) {
      await storage.delete(slot, LINK);
      links++;
    }
  }
  await Promise.all(names.map((name) => storage.delete(visitorId, name)));
  return { bins: names.filter((name) => !isRecord(name)).length, links };
}

/** `forget --visitor ID` or `forget --user USER_ID`. */
export async function forget(
  store: CliStore,
  target: { visitor?: string | undefined; user?: string | undefined },
  io: CliIo,
): Promise<number> {
  // Refuse before anything is deleted on a store that cannot list a visitor's bins.
  readerOf(store, 'forget');
  let visitorId = target.visitor;
  if (visitorId === undefined) {
    const secret = io.env.VISITOR_STATE_SECRET;
    if (!secret)
      throw new UsageError(
        "forget --user needs VISITOR_STATE_SECRET, the application's secret, to find the user's link",
      );
    const slot = linkSlot(secret, target.user as string);
    const linked = await store.storage.get(slot, LINK);
    if (typeof linked !== 'string') {
      io.out("nothing to forget: no visitor is linked to that user (or the secret is not the application's)");
      return 0;
    }
    visitorId = linked;
    // The link goes whatever happens below: the user asked to be forgotten.
    await store.storage.delete(slot, LINK);
  }
  const erased = await erase(store, visitorId);
  io.out(`forgot visitor ${visitorId}: ${erased.bins} bins, ${erased.links + (target.user ? 1 : 0)} links`);
  return 0;
}
