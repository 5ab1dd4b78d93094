import { type SerializeOptions, stringifySetCookie } from 'cookie';
import { BinError, ConfigError, CookieError, type ErrorHook } from '../errors.js';
import type { ResponseView } from '../http.js';
import { dropsSecureCookies, insecureCookieError } from '../secure-cookie.js';
import { checkBudget, DEFAULT_BUDGET, type HeaderLimited, VISITOR_COOKIE_BYTES } from './cookie-budget.js';
import {
  type Entry,
  type Geometry,
  headerBytes,
  keyOf,
  type Opened,
  payloadOf,
  plan,
  type Unit,
  unitsFrom,
} from './cookie-layout.js';
import type { RequestScopedStorage, Storage, StorageRequest, StoredBin } from './storage.js';

// The object form: cookie 2 dropped `serialize` and the (name, value, options) call.
const serialize = (name: string, value: string, options: SerializeOptions) =>
  stringifySetCookie({ ...options, name, value });

/** Options of {@link cookieStorage}. */
export interface CookieStorageOptions {
  /**
   * Base name of the chunk cookies, which are called `${name}.0`, `${name}.1`, ...
   * @default 'vs_data'
   */
  name?: string;
  /**
   * Budget, in bytes, of the Cookie header that visitor-state's cookies take: the visitor
   * cookie (counted as 256 bytes) and every chunk's name, `=`, value and `; `. A `set` past it
   * rejects with a `CookieError`. The default leaves 2 KiB of nginx's default 8 KB header line
   * for the site's other cookies; a budget that would not fit the server's limit on request
   * headers (with 4,096 bytes to spare for the browser's other headers) is refused at once.
   * @default 6144
   */
  maxBytes?: number;
  /**
   * The server, or its `{ maxHeaderSize }`, whose limit on request headers the budget must fit.
   * @default node:http's maxHeaderSize (16,384 unless node runs with --max-http-header-size)
   */
  server?: HeaderLimited;
  /** @default '/' */
  path?: string;
  /** @default none: the cookies go back to the host that set them only */
  domain?: string;
  /** @default 'lax' */
  sameSite?: 'lax' | 'strict' | 'none';
  /**
   * Whether the cookies carry `Secure`; `'auto'` follows whether the request came over HTTPS.
   * `sameSite: 'none'` always sets it, since browsers refuse such a cookie without it. Browsers
   * drop a Secure cookie set over plain http (localhost excepted): the first chunk that goes out
   * so is reported once per store through `onError`, with the fix.
   * @default 'auto'
   */
  secure?: boolean | 'auto';
}

/** The cookie storage bound to one request: every per-request capability, and {@link CookieBinding.clear}. */
export type CookieBinding = Storage &
  Required<Pick<Storage, 'getMany' | 'add' | 'update' | 'bins' | 'entries'>> & {
    /**
     * Clears (`Max-Age=0`) every chunk cookie of this store that the request carries or this
     * response sets, whichever visitor ID its bins are under and whether it opens or not (forged,
     * from another secret, from an earlier version): `forget()` calls it, so the browser keeps none.
     * Throws a `CookieError`, as a write does, when the response is missing or its headers were sent.
     */
    clear(): void;
  };

/** The sealed cookie storage: a request-scoped storage whose bound form has every per-request capability. */
export interface CookieStorage extends RequestScopedStorage {
  readonly kind: 'cookie-storage';
  readonly cookieName: string;
  /** The budget, in bytes of the Cookie header, as given or defaulted. */
  readonly maxBytes: number;
  /** How many chunk cookies the store may use: it never reads, writes or clears one past these. */
  readonly maxChunks: number;
  /**
   * Binds the store to one request. `onError` hears, once per store, that chunks went out Secure
   * over plain http to a host other than localhost, where browsers drop them.
   */
  bind(request: StorageRequest, onError?: ErrorHook): CookieBinding;
}

/** Whether a store is the sealed cookie storage, whose binding can clear every chunk it may have written. */
export const isCookieStorage = (storage: Storage | RequestScopedStorage | undefined): storage is CookieStorage =>
  (storage as Partial<CookieStorage> | undefined)?.kind === 'cookie-storage';

// Browsers keep a cookie only while its Set-Cookie line stays within 4,096 bytes.
const LINE_LIMIT = 4_096;
// Browsers cap a cookie's lifetime at 400 days (RFC 6265bis, section 5.5).
const MAX_AGE_S = 400 * 86_400;
const MAX_AGE_MS = MAX_AGE_S * 1_000;
// Room left for the value of one chunk below which a name or domain is too long to be useful.
const MIN_CHUNK = 512;
// Chromium keeps at most 180 cookies per host, shared with the site's own.
const MAX_CHUNKS = 32;
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * A storage that keeps a visitor's bins in the visitor's own browser, sealed with AES-256-GCM
 * under a key derived from the secret for this store's cookie name (a payload sealed for one
 * cookie store does not open in another), over HttpOnly cookies whose Set-Cookie lines stay
 * under the browsers' 4,096 bytes. Bins are grouped into chunks, each sealed on its own, so a
 * change to one bin re-sends only the chunk that holds it; cookies are written only when the
 * data changed. A chunk that was forged, truncated, or written by a version of this storage
 * before chunks were sealed one by one reads as empty, and is cleared by the next write.
 *
 * The cookies belong to one browser: a request keeps the bins of the visitor IDs it writes
 * under, and bins under any other ID are dropped at its first write.
 *
 * @example
 * ```ts
 * createVisitorState({ store: cookieStorage({ maxBytes: 4096 }) });
 * ```
 */
export function cookieStorage(options: CookieStorageOptions = {}): CookieStorage {
  const name = options.name ?? 'vs_data';
  const maxBytes = options.maxBytes ?? DEFAULT_BUDGET;
  const sameSite = options.sameSite ?? 'lax';
  const secureOption = sameSite === 'none' ? true : (options.secure ?? 'auto');
  const attributes: SerializeOptions = { path: options.path ?? '/', httpOnly: true, sameSite };
  if (options.domain !== undefined) attributes.domain = options.domain;

  if (!COOKIE_NAME.test(name)) {
    throw new ConfigError(
      `cookie storage name ${JSON.stringify(name)} is not a cookie name; use letters, digits, _ or -`,
    );
  }
  if (!Number.isInteger(maxBytes) || maxBytes < 1_024) {
    throw new ConfigError(`cookie storage maxBytes must be an integer of at least 1024; got ${maxBytes}`);
  }
  if (sameSite === 'none' && options.secure === false) {
    throw new ConfigError("cookie storage with sameSite 'none' needs Secure cookies; drop secure: false");
  }
  checkBudget(maxBytes, options.server);
  let overhead: number;
  try {
    overhead = serialize(`${name}.${MAX_CHUNKS - 1}`, '', { ...attributes, secure: true, maxAge: MAX_AGE_S }).length;
  } catch (error) {
    throw new ConfigError(`cookie storage path or domain is not valid in a cookie: ${String(error)}`, { cause: error });
  }
  // Base64url and `~` need no escaping, so a line is the attributes' length plus the value's.
  const valueCap = LINE_LIMIT - 1 - overhead;
  if (valueCap < MIN_CHUNK) {
    throw new ConfigError('cookie storage name, path and domain leave no room for data in a cookie; shorten them');
  }
  const byteBudget = maxBytes - VISITOR_COOKIE_BYTES;
  const fullChunk = name.length + 4 + valueCap + 2;
  const slotLimit = Math.ceil(byteBudget / fullChunk) + 1;
  if (slotLimit > MAX_CHUNKS) {
    throw new ConfigError(
      `cookie storage maxBytes ${maxBytes} needs more than ${MAX_CHUNKS} cookies; browsers keep about 180 per host (Chromium), shared with the site's own: lower it`,
    );
  }
  const geometry: Geometry = { name, valueCap, slotLimit, byteBudget };
  // What follows `; Max-Age=N` in every line, written once by the cookie package: serialising each
  // line through it cost about a tenth of a set (measured with npm run bench, cookie storage line).
  const tailOf = (secure: boolean) => serialize('x', '', { ...attributes, secure }).slice(2);
  const tails = { secure: tailOf(true), plain: tailOf(false) };
  const chunkPattern = new RegExp(`^${name.replace(/[.*+^$|]/g, '\\$&')}\\.(0|[1-9]\\d?)$`);
  const purpose = `cookie-storage:${name}`;
  let reportedInsecure = false;
  const insecureIssue = (request: StorageRequest): CookieError | undefined => {
    if (reportedInsecure || secureOption !== true || !dropsSecureCookies(request)) return undefined;
    reportedInsecure = true;
    return insecureCookieError({
      cookies: `the cookie storage's chunk cookies ${name}.N`,
      plural: true,
      hostPrefix: false,
      sameSite,
      secure: options.secure,
      lost: 'every bin they carry is lost',
      once: 'store',
    });
  };
  const settings: Settings = { maxBytes, tails, secure: secureOption, chunkPattern, geometry, purpose, insecureIssue };

  return {
    scope: 'request',
    kind: 'cookie-storage',
    cookieName: name,
    maxBytes,
    maxChunks: slotLimit,
    bind(request, onError) {
      return bindStorage(request, settings, onError);
    },
  };
}

interface Settings {
  readonly maxBytes: number;
  /** The attributes after `Max-Age`, for Secure and for plain cookies. */
  readonly tails: { readonly secure: string; readonly plain: string };
  readonly secure: boolean | 'auto';
  readonly chunkPattern: RegExp;
  readonly geometry: Geometry;
  readonly purpose: string;
  /** The report that chunks went out Secure where browsers drop them: once per store, `undefined` otherwise. */
  readonly insecureIssue: (request: StorageRequest) => CookieError | undefined;
}

interface Loaded {
  /** The units the browser will hold once this response arrives. */
  units: Unit[];
  /** Every live bin they hold, by {@link keyOf}. */
  live: Map<string, Entry>;
  /** The chunk values the browser will hold once this response arrives, by index, readable or not. */
  held: Map<number, string>;
}

function bindStorage(request: StorageRequest, settings: Settings, onError: ErrorHook | undefined): CookieBinding {
  const { geometry, purpose } = settings;
  const { name } = geometry;
  const secure = settings.secure === 'auto' ? request.secure : settings.secure;
  const tail = secure ? settings.tails.secure : settings.tails.plain;
  // The visitor IDs this request has written under: bins under any other ID are dropped when it writes.
  const writers = new Set<string>();
  let loaded: Loaded | undefined;

  const open = (sealed: string): Opened | undefined => {
    const opened = request.keys.unseal(purpose, sealed);
    return opened && parsePayload(opened.plaintext, opened.rotated);
  };

  /** The chunk index a cookie name stands for, when this store may have written it. */
  const chunkIndex = (cookieName: string): number | undefined => {
    const match = settings.chunkPattern.exec(cookieName);
    const index = match ? Number(match[1]) : undefined;
    return index !== undefined && index < geometry.slotLimit ? index : undefined;
  };

  const load = (): Loaded => {
    if (loaded) return loaded;
    const held = new Map<number, string>();
    for (const [cookieName, value] of Object.entries(request.cookies)) {
      const index = chunkIndex(cookieName);
      if (index !== undefined && value !== undefined) held.set(index, value);
    }
    const { units, live, rotated } = unitsFrom(held, open, request.now());
    loaded = { units, live, held };
    // A chunk sealed by an older secret is re-sealed at once while the response is still open.
    const response = request.response;
    if (rotated && response && !response.headersSent) commit(live, undefined);
    return loaded;
  };

  const setChunk = (response: ResponseView, i: number, value: string, maxAge: number): void => {
    // Values are base64url, digits and `~`: nothing to encode.
    response.setCookie(`${name}.${i}`, `${name}.${i}=${value}; Max-Age=${maxAge}${tail}`);
  };

  /** The response, while it can still take cookies; `late` says what to do instead of writing after its headers. */
  const writable = (late: string): ResponseView => {
    const response = request.response;
    if (!response) {
      throw new CookieError('cookie storage cannot write without a response: bind it with the response of the request');
    }
    if (response.headersSent) throw new CookieError(late);
    return response;
  };

  /** Lays out `live` over the chunks and writes the ones that changed; `bin` names the set that a budget overrun rejects. */
  const commit = (live: Map<string, Entry>, bin: string | undefined): void => {
    const state = loaded as Loaded;
    const response = writable('set after the response headers were sent: call set before writing the body');
    const now = request.now();
    const seal = (entries: Iterable<Entry>) => request.keys.seal(purpose, payloadOf(entries, Math.floor(now)));
    const next = plan(state.units, live, geometry, seal);
    if (!next.fits && bin !== undefined) {
      const total = VISITOR_COOKIE_BYTES + headerBytes(next.units, name);
      throw new CookieError(
        `bin '${bin}' would make the cookie state ${total} bytes, over the ${settings.maxBytes}-byte budget; keep cookie bins small or raise maxBytes`,
      );
    }
    const written = new Map<number, string>();
    let sent = false;
    for (const unit of next.units) {
      const maxAge = maxAgeOf(unit.entries.values(), now);
      for (const [i, slot] of unit.slots.entries()) {
        const value = unit.values[i] as string;
        written.set(slot, value);
        if (state.held.get(slot) !== value) {
          setChunk(response, slot, value, maxAge);
          sent = true;
        }
      }
    }
    for (const slot of state.held.keys()) if (!written.has(slot)) setChunk(response, slot, '', 0);
    loaded = { units: next.units, live, held: written };
    if (sent && onError) {
      const issue = settings.insecureIssue(request);
      if (issue) onError(issue);
    }
  };

  const clear = (): void => {
    const state = load();
    if (state.held.size === 0) return;
    const response = writable(
      'the cookie storage cannot clear its cookies after the response headers were sent: call forget() before writing the body',
    );
    for (const slot of state.held.keys()) setChunk(response, slot, '', 0);
    loaded = { units: [], live: new Map(), held: new Map() };
  };

  const liveEntry = (visitorId: string, bin: string): Entry | undefined => {
    const entry = load().live.get(keyOf(visitorId, bin));
    return entry && entry.expires > request.now() ? entry : undefined;
  };

  /** The bins that stay after a write under `visitorId`: those of the IDs this request writes under, still live. */
  const keptFor = (visitorId: string): Map<string, Entry> => {
    writers.add(visitorId);
    const now = request.now();
    const kept = new Map<string, Entry>();
    for (const [key, entry] of load().live) if (writers.has(entry.id) && entry.expires > now) kept.set(key, entry);
    return kept;
  };

  const set = (visitorId: string, bin: string, data: unknown, ttlMs: number): void => {
    if (!(ttlMs > 0)) throw new BinError(`bin '${bin}' needs a positive ttl in milliseconds; got ${ttlMs}`);
    const json = toJson(bin, data);
    const expires = request.now() + Math.min(ttlMs, MAX_AGE_MS);
    const previous = liveEntry(visitorId, bin);
    const key = keyOf(visitorId, bin);
    // The same data is not re-sent for a small shift of its expiry: only once a tenth of its lifetime has passed.
    if (previous?.json === json && Math.abs(expires - previous.expires) <= ttlMs / 10) {
      writers.add(visitorId);
      return;
    }
    const live = keptFor(visitorId);
    live.set(key, { id: visitorId, bin, json, expires });
    commit(live, bin);
  };

  const remove = (visitorId: string, bin: string): void => {
    if (!liveEntry(visitorId, bin)) return;
    const live = keptFor(visitorId);
    live.delete(keyOf(visitorId, bin));
    commit(live, undefined);
  };

  const dataOf = (entry: Entry | undefined): unknown => entry && JSON.parse(entry.json);

  const entriesOf = (visitorId: string): StoredBin[] => {
    const now = request.now();
    return [...load().live.values()]
      .filter((entry) => entry.id === visitorId && entry.expires > now)
      .map((entry) => ({ bin: entry.bin, data: JSON.parse(entry.json), expiresAt: entry.expires }));
  };

  return {
    async get(visitorId, bin) {
      return dataOf(liveEntry(visitorId, bin));
    },

    async getMany(visitorId, bins) {
      return bins.map((bin) => dataOf(liveEntry(visitorId, bin)));
    },

    async bins(visitorId) {
      return entriesOf(visitorId).map((entry) => entry.bin);
    },

    async entries(visitorId) {
      return entriesOf(visitorId);
    },

    async set(visitorId, bin, data, ttlMs) {
      set(visitorId, bin, data, ttlMs);
    },

    async add(visitorId, bin, data, ttlMs) {
      if (liveEntry(visitorId, bin)) return false;
      set(visitorId, bin, data, ttlMs);
      return true;
    },

    // Atomic for the request: the cookies are this request's own, and nothing awaits between the read and the write.
    async update(visitorId, bin, next, ttlMs) {
      const value = next(dataOf(liveEntry(visitorId, bin)));
      if (value === undefined) {
        remove(visitorId, bin);
        return undefined;
      }
      set(visitorId, bin, value, ttlMs);
      return dataOf(liveEntry(visitorId, bin));
    },

    async delete(visitorId, bin) {
      remove(visitorId, bin);
    },

    clear,
  };
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** A unit's payload `{"t":writtenAt,"v":{id:{bin:[data,expiresAt]}}}`; `undefined` for anything else. */
function parsePayload(plaintext: string, rotated: boolean): Opened | undefined {
  let payload: unknown;
  try {
    payload = JSON.parse(plaintext);
  } catch (error) {
    if (error instanceof SyntaxError) return undefined;
    throw error;
  }
  if (!isRecord(payload) || typeof payload.t !== 'number' || !Number.isFinite(payload.t) || !isRecord(payload.v)) {
    return undefined;
  }
  const entries: Entry[] = [];
  for (const [id, bins] of Object.entries(payload.v)) {
    if (!isRecord(bins)) return undefined;
    for (const [bin, value] of Object.entries(bins)) {
      if (!Array.isArray(value) || value.length !== 2 || typeof value[1] !== 'number' || !Number.isFinite(value[1])) {
        return undefined;
      }
      entries.push({ id, bin, json: JSON.stringify(value[0]), expires: value[1] });
    }
  }
  return { entries, writtenAt: payload.t, rotated };
}

function toJson(bin: string, data: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(data);
  } catch (error) {
    throw new BinError(`bin '${bin}' holds data that JSON cannot carry`, { cause: error });
  }
  if (json === undefined) throw new BinError(`bin '${bin}' holds data that JSON cannot carry: ${typeof data}`);
  return json;
}

/** Seconds until the latest of `entries` expires, capped at the browsers' 400 days. */
function maxAgeOf(entries: Iterable<Entry>, now: number): number {
  let latest = now;
  for (const entry of entries) latest = Math.max(latest, entry.expires);
  return Math.min(Math.ceil((latest - now) / 1_000), MAX_AGE_S);
}
