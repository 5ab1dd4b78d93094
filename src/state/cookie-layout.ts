/**
 * How the cookie storage lays bins out over its cookies ("slots" `name.0`, `name.1`, …).
 *
 * Bins are grouped into units; each unit is sealed on its own and fills one slot, or, when it
 * holds one bin too large for a slot (or the whole state, see below), a run of slots. A write
 * re-seals only the units whose bins changed and keeps the others as the browser holds them,
 * so a change to one small bin re-sends the one cookie that holds it. New bins go into a unit
 * that is being rewritten anyway, then into one with room, and only then into a new slot; two
 * units that fit in one slot are merged when one of them is rewritten, so the state stays in
 * about as few cookies as fit. When that layout would pass the slot or byte budget, the bins
 * are packed afresh (largest first), and as a last resort into one unit over consecutive slots,
 * which is the fewest cookies possible.
 */

/** One bin of one visitor, as the cookies hold it. */
export interface Entry {
  readonly id: string;
  readonly bin: string;
  /** The data as JSON: a fresh copy is one `JSON.parse` away, and equality is one string comparison. */
  readonly json: string;
  /** Expiry in ms since the epoch. */
  readonly expires: number;
}

/** A sealed group of bins and the slots that carry it. */
export interface Unit {
  /** Slot indices: the head of the sealed text first, then the rest in ascending order. */
  readonly slots: readonly number[];
  /** The cookie value of each slot, as sent. */
  readonly values: readonly string[];
  /** What the unit holds, by {@link keyOf}. */
  readonly entries: ReadonlyMap<string, Entry>;
  /** Must be rewritten at the next write: sealed by an older secret, or holding an expired or outdated bin. */
  readonly stale: boolean;
}

/** The fixed sizes of one cookie storage. */
export interface Geometry {
  /** Base name of the slots. */
  readonly name: string;
  /** Longest cookie value that keeps a slot's whole Set-Cookie line under the browsers' limit. */
  readonly valueCap: number;
  /** How many slots the store may use; slots at or past this index are never read or written. */
  readonly slotLimit: number;
  /** Bytes the slots may take in the Cookie header: `name.i=value; ` each. */
  readonly byteBudget: number;
}

export const keyOf = (id: string, bin: string): string => JSON.stringify([id, bin]);

// AES-256-GCM seal: a version byte, a 12-byte IV and a 16-byte tag around the ciphertext.
const SEAL_OVERHEAD = 29;
// Continuation slots are `head~part`; head indices have at most two digits.
const CONTINUATION_PREFIX = 3;
// `{"t":` 13 digits `,"v":{` … `}}`
const ENVELOPE = 26;

const idCost = (id: string) => Buffer.byteLength(JSON.stringify(id)) + 4;
const entryCost = (entry: Entry) =>
  Buffer.byteLength(JSON.stringify(entry.bin)) + Buffer.byteLength(entry.json) + String(entry.expires).length + 5;

/** An upper bound of the payload bytes of a unit holding `entries`. */
function payloadBytes(entries: Iterable<Entry>): number {
  const ids = new Set<string>();
  let bytes = ENVELOPE;
  for (const entry of entries) {
    if (!ids.has(entry.id)) {
      ids.add(entry.id);
      bytes += idCost(entry.id);
    }
    bytes += entryCost(entry);
  }
  return bytes;
}

/** The payload JSON of a unit: `{"t":writtenAt,"v":{id:{bin:[data,expires]}}}`. */
export function payloadOf(entries: Iterable<Entry>, writtenAt: number): string {
  const byId = new Map<string, string[]>();
  for (const entry of entries) {
    let list = byId.get(entry.id);
    if (!list) {
      list = [];
      byId.set(entry.id, list);
    }
    list.push(`${JSON.stringify(entry.bin)}:[${entry.json},${entry.expires}]`);
  }
  const ids = [...byId].map(([id, list]) => `${JSON.stringify(id)}:{${list.join(',')}}`);
  return `{"t":${writtenAt},"v":{${ids.join(',')}}}`;
}

/** The slot values that carry `sealed`, split under the slot's capacity. */
export function partsOf(sealed: string, head: number, valueCap: number): string[] {
  if (sealed.length <= valueCap) return [sealed];
  const room = valueCap - CONTINUATION_PREFIX;
  const parts: string[] = [];
  for (let offset = 0; offset < sealed.length; offset += room) {
    const part = sealed.slice(offset, offset + room);
    parts.push(offset === 0 ? part : `${head}~${part}`);
  }
  return parts;
}

/** Bytes that `name.i=value; ` takes in the Cookie header for each slot of `units`. */
export function headerBytes(units: readonly Unit[], name: string): number {
  let bytes = 0;
  for (const unit of units) {
    for (const [i, slot] of unit.slots.entries()) {
      bytes += name.length + 1 + String(slot).length + 1 + (unit.values[i] as string).length + 2;
    }
  }
  return bytes;
}

interface Draft {
  /** The slot it keeps, for a rewritten single-slot unit; `undefined` for a new unit. */
  readonly slot: number | undefined;
  readonly entries: Map<string, Entry>;
  bytes: number;
}

/** What a write lays out: every unit, and whether it fits the geometry. */
export interface Plan {
  readonly units: Unit[];
  readonly fits: boolean;
}

/**
 * The layout for `live` (every bin the cookies should hold after this write), changing as few
 * of `current`'s units as it can. `seal` turns a unit's entries into its sealed text.
 */
export function plan(
  current: readonly Unit[],
  live: ReadonlyMap<string, Entry>,
  geometry: Geometry,
  seal: (entries: Iterable<Entry>) => string,
): Plan {
  const singleCap = (geometry.valueCap * 3) / 4 - SEAL_OVERHEAD - 1;
  const fitsOne = (bytes: number) => bytes <= singleCap;
  const same = (a: Entry, b: Entry | undefined) => b !== undefined && a.json === b.json && a.expires === b.expires;

  const kept: Unit[] = [];
  const drafts: Draft[] = [];
  const rewritten: { draft: Draft; former: Unit }[] = [];
  const placed = new Set<string>();
  for (const unit of current) {
    const clean = !unit.stale && [...unit.entries].every(([key, entry]) => same(entry, live.get(key)));
    if (clean && unit.entries.size > 0) {
      kept.push(unit);
      for (const key of unit.entries.keys()) placed.add(key);
    } else if (unit.slots.length === 1) {
      const draft: Draft = { slot: unit.slots[0], entries: new Map(), bytes: ENVELOPE };
      drafts.push(draft);
      rewritten.push({ draft, former: unit });
    }
    // A rewritten multi-slot unit gives its slots back; its bins are placed afresh below.
  }
  // A rewritten single-slot unit first takes back the bins it held, while they fit.
  for (const { draft, former } of rewritten) {
    for (const key of former.entries.keys()) {
      const entry = live.get(key);
      if (entry && !placed.has(key)) addTo(draft, key, entry, fitsOne, placed);
    }
  }
  const spanning: Map<string, Entry>[] = [];
  for (const [key, entry] of live) {
    if (placed.has(key)) continue;
    const alone = ENVELOPE + idCost(entry.id) + entryCost(entry);
    if (!fitsOne(alone)) {
      spanning.push(new Map([[key, entry]]));
      placed.add(key);
      continue;
    }
    if (drafts.some((draft) => addTo(draft, key, entry, fitsOne, placed))) continue;
    const roomy = kept.findIndex(
      (unit) => unit.slots.length === 1 && fitsOne(payloadBytes([...unit.entries.values(), entry])),
    );
    if (roomy >= 0) {
      const unit = kept.splice(roomy, 1)[0] as Unit;
      const draft: Draft = { slot: unit.slots[0], entries: new Map(unit.entries), bytes: 0 };
      draft.bytes = payloadBytes(draft.entries.values());
      drafts.push(draft);
      addTo(draft, key, entry, fitsOne, placed);
      continue;
    }
    const draft: Draft = { slot: undefined, entries: new Map(), bytes: ENVELOPE };
    drafts.push(draft);
    addTo(draft, key, entry, fitsOne, placed);
  }
  mergeSmall(drafts, kept, fitsOne);

  const units = assemble(
    kept,
    drafts.filter((draft) => draft.entries.size > 0),
    spanning,
    geometry,
    seal,
  );
  if (withinLimits(units, geometry)) return { units, fits: true };
  return repack(live, geometry, seal, fitsOne);
}

function addTo(
  draft: Draft,
  key: string,
  entry: Entry,
  fitsOne: (bytes: number) => boolean,
  placed: Set<string>,
): boolean {
  const hasId = [...draft.entries.values()].some((e) => e.id === entry.id);
  const bytes = draft.bytes + entryCost(entry) + (hasId ? 0 : idCost(entry.id));
  if (!fitsOne(bytes)) return false;
  draft.entries.set(key, entry);
  draft.bytes = bytes;
  placed.add(key);
  return true;
}

/** Merges a rewritten unit with another single-slot unit while the two fit in one slot together. */
function mergeSmall(drafts: Draft[], kept: Unit[], fitsOne: (bytes: number) => boolean): void {
  for (let merged = true; merged; ) {
    merged = false;
    for (const draft of drafts) {
      if (draft.entries.size === 0) continue;
      const other = drafts.find(
        (d) =>
          d !== draft &&
          d.entries.size > 0 &&
          fitsOne(payloadBytes([...draft.entries.values(), ...d.entries.values()])),
      );
      if (other) {
        for (const [key, entry] of other.entries) draft.entries.set(key, entry);
        other.entries.clear();
        draft.bytes = payloadBytes(draft.entries.values());
        merged = true;
        break;
      }
      const i = kept.findIndex(
        (unit) =>
          unit.slots.length === 1 && fitsOne(payloadBytes([...draft.entries.values(), ...unit.entries.values()])),
      );
      if (i >= 0) {
        const unit = kept.splice(i, 1)[0] as Unit;
        for (const [key, entry] of unit.entries) draft.entries.set(key, entry);
        draft.bytes = payloadBytes(draft.entries.values());
        merged = true;
        break;
      }
    }
  }
}

/** Seals the drafts and the spanning groups into slots not taken by the kept units, lowest first. */
function assemble(
  kept: readonly Unit[],
  drafts: readonly Draft[],
  spanning: readonly Map<string, Entry>[],
  geometry: Geometry,
  seal: (entries: Iterable<Entry>) => string,
): Unit[] {
  const taken = new Set<number>();
  for (const unit of kept) for (const slot of unit.slots) taken.add(slot);
  for (const draft of drafts) if (draft.slot !== undefined) taken.add(draft.slot);
  let next = 0;
  const free = () => {
    while (taken.has(next)) next++;
    taken.add(next);
    return next;
  };
  const units: Unit[] = [...kept];
  const add = (entries: Map<string, Entry>, head: number) => {
    // A unit sized for one slot spans more only if its payload outgrew the estimate (an odd clock).
    const values = partsOf(seal(entries.values()), head, geometry.valueCap);
    units.push({ slots: [head, ...values.slice(1).map(free)], values, entries, stale: false });
  };
  for (const draft of drafts) add(draft.entries, draft.slot ?? free());
  for (const entries of spanning) add(entries, free());
  return units.sort((a, b) => (a.slots[0] as number) - (b.slots[0] as number));
}

function withinLimits(units: readonly Unit[], geometry: Geometry): boolean {
  for (const unit of units) for (const slot of unit.slots) if (slot >= geometry.slotLimit) return false;
  return headerBytes(units, geometry.name) <= geometry.byteBudget;
}

/** A fresh layout from slot 0: largest bins first into units that fit, else everything in one unit. */
function repack(
  live: ReadonlyMap<string, Entry>,
  geometry: Geometry,
  seal: (entries: Iterable<Entry>) => string,
  fitsOne: (bytes: number) => boolean,
): Plan {
  const drafts: Draft[] = [];
  const spanning: Map<string, Entry>[] = [];
  const placed = new Set<string>();
  const bySize = [...live].sort(([, a], [, b]) => entryCost(b) - entryCost(a));
  for (const [key, entry] of bySize) {
    if (drafts.some((draft) => addTo(draft, key, entry, fitsOne, placed))) continue;
    const draft: Draft = { slot: undefined, entries: new Map(), bytes: ENVELOPE };
    if (addTo(draft, key, entry, fitsOne, placed)) drafts.push(draft);
    else spanning.push(new Map([[key, entry]]));
  }
  const packed = assemble([], drafts, spanning, geometry, seal);
  if (withinLimits(packed, geometry)) return { units: packed, fits: true };
  const whole = live.size === 0 ? [] : assemble([], [], [new Map(live)], geometry, seal);
  return { units: whole, fits: withinLimits(whole, geometry) };
}

/** What one sealed unit opened to. */
export interface Opened {
  readonly entries: readonly Entry[];
  /** When it was written, in ms since the epoch: of two units that hold one bin, the later wins. */
  readonly writtenAt: number;
  /** Sealed by an older secret. */
  readonly rotated: boolean;
}

/** The head slot a continuation slot's value names (`3~…`), or `undefined` for a head. */
function headOf(value: string): number | undefined {
  const tilde = value.indexOf('~');
  if (tilde !== 1 && tilde !== 2) return undefined;
  const head = Number(value.slice(0, tilde));
  return Number.isInteger(head) ? head : undefined;
}

/**
 * The units that the request's slots carry, and every live bin they hold. A slot that does not
 * open (forged, truncated, from another store or an older format) holds nothing.
 */
export function unitsFrom(
  held: ReadonlyMap<number, string>,
  open: (sealed: string) => Opened | undefined,
  now: number,
): { units: Unit[]; live: Map<string, Entry>; rotated: boolean } {
  const continuations = new Map<number, number[]>();
  const heads: number[] = [];
  for (const [slot, value] of held) {
    const head = headOf(value);
    if (head === undefined) heads.push(slot);
    else if (head !== slot) continuations.set(head, [...(continuations.get(head) ?? []), slot]);
  }
  const read: { unit: Unit; writtenAt: number; rotated: boolean }[] = [];
  for (const head of heads.sort((a, b) => a - b)) {
    const slots = [head, ...(continuations.get(head) ?? []).sort((a, b) => a - b)];
    const values = slots.map((slot) => held.get(slot) as string);
    const sealed = values.map((value, i) => (i === 0 ? value : value.slice(value.indexOf('~') + 1))).join('');
    const opened = open(sealed);
    if (!opened) continue;
    const entries = new Map<string, Entry>();
    let expired = false;
    for (const entry of opened.entries) {
      if (entry.expires > now) entries.set(keyOf(entry.id, entry.bin), entry);
      else expired = true;
    }
    const unit = { slots, values, entries, stale: opened.rotated || expired };
    read.push({ unit, writtenAt: opened.writtenAt, rotated: opened.rotated });
  }
  // A bin found in two units (a response the browser took only in part) is read from the later one.
  const live = new Map<string, Entry>();
  for (const { unit } of [...read].sort((a, b) => b.writtenAt - a.writtenAt)) {
    for (const [key, entry] of unit.entries) if (!live.has(key)) live.set(key, entry);
  }
  return { units: read.map(({ unit }) => unit), live, rotated: read.some(({ rotated }) => rotated) };
}
