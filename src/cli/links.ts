import { createKeyRing } from '../crypto.js';
import type { CliStore } from './store.js';

// The records `visitor.link()` keeps (ARCHITECTURE.md, "Records the library keeps").

/** The bin of a user's link record, in the user's slot: the linked visitor ID. */
export const LINK = '@link';
/** A visitor's back-reference to a user's link record: `@link:` + the record's slot. */
export const LINK_PREFIX = '@link:';
/** The list of link slots where the library keeps them in one bin of the visitor. */
const LINK_LIST = '@links';

/** The slot of a user's link record, as `visitor.link()` writes it (ARCHITECTURE.md, "Records the library keeps"). */
export function linkSlot(secret: string, userId: string): string {
  return `L${createKeyRing([secret]).mac('link', userId, 16)}`;
}

/**
 * The slots of the user links a visitor's records name: one `@link:<slot>` back-reference per
 * link, or the `@links` list of slots kept in one bin.
 */
export async function linkSlotsOf(store: CliStore, visitorId: string, names: readonly string[]): Promise<string[]> {
  const slots = new Set(
    names.filter((name) => name.startsWith(LINK_PREFIX)).map((name) => name.slice(LINK_PREFIX.length)),
  );
  if (names.includes(LINK_LIST)) {
    const listed = await store.storage.get(visitorId, LINK_LIST);
    if (Array.isArray(listed)) for (const slot of listed) if (typeof slot === 'string') slots.add(slot);
  }
  return [...slots];
}
