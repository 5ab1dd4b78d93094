import { type SerializeOptions, stringifySetCookie } from 'cookie';
import { BinError, ConfigError, CookieError } from '../errors.js';
import type { ResponseView } from '../http.js';
import type { RequestScopedStorage, Storage, StorageRequest } from './storage.js';

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
   * Budget, in bytes, of all chunk cookies together (names and values); a `set` past it rejects.
   * @default 8192
   */
  maxBytes?: number;
  /** @default '/' */
  path?: string;
  /** @default none: the cookies go back to the host that set them only */
  domain?: string;
  /** @default 'lax' */
  sameSite?: 'lax' | 'strict' | 'none';
  /**
   * Whether the cookies carry `Secure`; `'auto'` follows whether the request came over HTTPS.
   * `sameSite: 'none'` always sets it, since browsers refuse such a cookie without it.
   * @default 'auto'
   */
  secure?: boolean | 'auto';
}

interface Entry {
  /** The data as JSON: a fresh copy is one `JSON.parse` away, and equality is one string comparison. */
  readonly json: string;
  readonly expires: number;
}

interface State {
  readonly visitorId: string | undefined;
  readonly bins: ReadonlyMap<string, Entry>;
}

const PURPOSE = 'cookie-storage';
// Browsers keep a cookie only while its Set-Cookie line stays within 4,096 bytes.
const LINE_LIMIT = 4_096;
// Browsers cap a cookie's lifetime at 400 days (RFC 6265bis, section 5.5).
const MAX_AGE_S = 400 * 86_400;
const MAX_AGE_MS = MAX_AGE_S * 1_000;
// Room left for the value of one chunk below which a name or domain is too long to be useful.
const MIN_CHUNK = 512;
// A request could send any number of chunk cookies; none we write comes near this many.
const MAX_CHUNKS = 64;
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const EMPTY: State = { visitorId: undefined, bins: new Map() };

/**
 * A storage that keeps a visitor's bins in the visitor's own browser: one JSON payload,
 * sealed with AES-256-GCM under the `cookie-storage` key of the secret, split over as
 * few HttpOnly cookies as the browsers' 4,096-byte limit allows. Cookies are written only
 * when the data changed; a cookie that was forged, truncated or is missing a chunk reads
 * as empty. A payload sealed under an older secret is read, and re-sealed under the
 * current one at once while the response is still open (else with the next write).
 *
 * The cookies belong to the browser, so they hold one visitor's bins: bins of another
 * visitor ID read as absent, and a `set` for a new visitor ID starts the state afresh.
 *
 * @example
 * ```ts
 * const storage = cookieStorage({ maxBytes: 4096 });
 * const bins = storage.bind({ cookies, secure: true, response, keys, now: Date.now });
 * await bins.set(visitorId, 'shop:currency', 'EUR', 86_400_000);
 * await bins.get(visitorId, 'shop:currency'); // 'EUR'
 * ```
 */
export function cookieStorage(options: CookieStorageOptions = {}): RequestScopedStorage {
  const name = options.name ?? 'vs_data';
  const maxBytes = options.maxBytes ?? 8_192;
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
  let overhead: number;
  try {
    overhead = serialize(`${name}.${MAX_CHUNKS}`, '', { ...attributes, secure: true, maxAge: MAX_AGE_S }).length;
  } catch (error) {
    throw new ConfigError(`cookie storage path or domain is not valid in a cookie: ${String(error)}`, { cause: error });
  }
  if (LINE_LIMIT - overhead < MIN_CHUNK) {
    throw new ConfigError('cookie storage name, path and domain leave no room for data in a cookie; shorten them');
  }
  const chunkPattern = new RegExp(`^${name.replace(/[.*+^$|]/g, '\\$&')}\\.(0|[1-9]\\d{0,3})$`);

  return {
    scope: 'request',
    cookieName: name,
    bind(request) {
      return bindStorage(request, { name, maxBytes, attributes, secure: secureOption, chunkPattern });
    },
  };
}

interface Settings {
  readonly name: string;
  readonly maxBytes: number;
  readonly attributes: SerializeOptions;
  readonly secure: boolean | 'auto';
  readonly chunkPattern: RegExp;
}

function bindStorage(request: StorageRequest, settings: Settings): Storage {
  const { name, maxBytes, chunkPattern } = settings;
  const attributes: SerializeOptions = {
    ...settings.attributes,
    secure: settings.secure === 'auto' ? request.secure : settings.secure,
  };
  // The chunk values the browser will hold once this response arrives, by index.
  const held = new Map<number, string>();
  let state: State | undefined;
  // The payload JSON the cookies hold now ('' for none or unreadable): a write that would not change it is skipped.
  let stored = '';
  let resealDue = false;

  const load = (): State => {
    if (state) return state;
    for (const [cookieName, value] of Object.entries(request.cookies)) {
      const match = chunkPattern.exec(cookieName);
      if (match && value !== undefined) held.set(Number(match[1]), value);
    }
    const opened = open(joinChunks(held), request);
    state = opened?.state ?? EMPTY;
    stored = encode(state, request.now());
    resealDue = opened?.rotated === true && stored !== '';
    if (resealDue && request.response && !request.response.headersSent) write(state, undefined);
    return state;
  };

  const setChunk = (response: ResponseView, i: number, value: string, maxAge: number): void => {
    response.setCookie(`${name}.${i}`, serialize(`${name}.${i}`, value, { ...attributes, maxAge }));
  };

  const write = (next: State, bin: string | undefined): void => {
    const now = request.now();
    const json = encode(next, now);
    if (json === stored && !resealDue) {
      state = next;
      return;
    }
    const response = request.response;
    if (!response) {
      throw new CookieError('cookie storage cannot write without a response: bind it with the response of the request');
    }
    if (response.headersSent) {
      throw new CookieError('set after the response headers were sent: call set before writing the body');
    }
    const maxAge = maxAgeOf(next, now);
    const chunks = json === '' ? [] : split(request.keys.seal(PURPOSE, json), name, { ...attributes, maxAge });
    const total = chunks.reduce((sum, chunk, i) => sum + `${name}.${i}`.length + chunk.length, 0);
    if (bin !== undefined && total > maxBytes) {
      throw new CookieError(
        `bin '${bin}' would make the cookie state ${total} bytes, over the ${maxBytes}-byte budget; keep cookie bins small or raise maxBytes`,
      );
    }
    for (const [i, chunk] of chunks.entries()) {
      if (held.get(i) !== chunk) setChunk(response, i, chunk, maxAge);
    }
    for (const i of held.keys()) {
      if (i >= chunks.length) setChunk(response, i, '', 0);
    }
    held.clear();
    for (const [i, chunk] of chunks.entries()) held.set(i, chunk);
    state = next;
    stored = json;
    resealDue = false;
  };

  const live = (visitorId: string, bin: string): Entry | undefined => {
    const current = load();
    const entry = current.visitorId === visitorId ? current.bins.get(bin) : undefined;
    return entry && entry.expires > request.now() ? entry : undefined;
  };

  return {
    async get(visitorId, bin) {
      const entry = live(visitorId, bin);
      return entry && JSON.parse(entry.json);
    },

    async getMany(visitorId, bins) {
      return bins.map((bin) => {
        const entry = live(visitorId, bin);
        return entry && JSON.parse(entry.json);
      });
    },

    async bins(visitorId) {
      const current = load();
      if (current.visitorId !== visitorId) return [];
      const now = request.now();
      return [...current.bins].filter(([, entry]) => entry.expires > now).map(([bin]) => bin);
    },

    async set(visitorId, bin, data, ttlMs) {
      if (!(ttlMs > 0)) throw new BinError(`bin '${bin}' needs a positive ttl in milliseconds; got ${ttlMs}`);
      const json = toJson(bin, data);
      const current = load();
      const expires = request.now() + Math.min(ttlMs, MAX_AGE_MS);
      const bins = new Map(current.visitorId === visitorId ? current.bins : []);
      const previous = bins.get(bin);
      // The same data is not re-sent for a small shift of its expiry: only once a tenth of its lifetime has passed.
      if (previous?.json === json && Math.abs(expires - previous.expires) <= ttlMs / 10) return;
      bins.set(bin, { json, expires });
      write({ visitorId, bins }, bin);
    },

    async delete(visitorId, bin) {
      const current = load();
      if (current.visitorId !== visitorId || !current.bins.has(bin)) return;
      const bins = new Map(current.bins);
      bins.delete(bin);
      write({ visitorId, bins }, undefined);
    },
  };
}

/** The chunks `${name}.0` onwards up to the first gap, joined; `''` when there are none. */
function joinChunks(held: ReadonlyMap<number, string>): string {
  let joined = '';
  for (let i = 0; i < MAX_CHUNKS; i++) {
    const chunk = held.get(i);
    if (chunk === undefined) break;
    joined += chunk;
  }
  return joined;
}

/** The state a sealed payload holds; `undefined` for anything forged, truncated or malformed. */
function open(sealed: string, request: StorageRequest): { state: State; rotated: boolean } | undefined {
  const opened = request.keys.unseal(PURPOSE, sealed);
  if (!opened) return undefined;
  let payload: unknown;
  try {
    payload = JSON.parse(opened.plaintext);
  } catch (error) {
    if (error instanceof SyntaxError) return undefined;
    throw error;
  }
  const state = toState(payload, request.now());
  return state && { state, rotated: opened.rotated };
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Checks the payload's shape `{ v: visitorId, b: { [bin]: [data, expiresAtMs] } }` and drops expired bins. */
function toState(payload: unknown, now: number): State | undefined {
  if (!isRecord(payload) || typeof payload.v !== 'string' || !isRecord(payload.b)) return undefined;
  const bins = new Map<string, Entry>();
  for (const [bin, value] of Object.entries(payload.b)) {
    if (!Array.isArray(value) || value.length !== 2 || typeof value[1] !== 'number' || !Number.isFinite(value[1])) {
      return undefined;
    }
    if (value[1] > now) bins.set(bin, { json: JSON.stringify(value[0]), expires: value[1] });
  }
  return { visitorId: payload.v, bins };
}

/** The payload JSON of the bins still live at `now`; `''` when there are none. */
function encode(state: State, now: number): string {
  let body = '';
  for (const [bin, entry] of state.bins) {
    if (entry.expires > now) body += `${body ? ',' : ''}${JSON.stringify(bin)}:[${entry.json},${entry.expires}]`;
  }
  return body ? `{"v":${JSON.stringify(state.visitorId)},"b":{${body}}}` : '';
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

/** Seconds until the latest bin expires, capped at the browsers' 400 days. */
function maxAgeOf(state: State, now: number): number {
  let latest = now;
  for (const entry of state.bins.values()) latest = Math.max(latest, entry.expires);
  return Math.min(Math.ceil((latest - now) / 1_000), MAX_AGE_S);
}

/** Cuts `sealed` into as few chunks as keep each whole Set-Cookie line under {@link LINE_LIMIT}. */
function split(sealed: string, name: string, attributes: SerializeOptions): string[] {
  const chunks: string[] = [];
  for (let offset = 0, i = 0; offset < sealed.length; i++) {
    // Base64url needs no escaping, so the line is the attributes' length plus the chunk's.
    const room = LINE_LIMIT - 1 - serialize(`${name}.${i}`, '', attributes).length;
    chunks.push(sealed.slice(offset, offset + room));
    offset += room;
  }
  return chunks;
}
