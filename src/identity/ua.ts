import { LRUCache } from 'lru-cache';
// ua-parser-js 1.0.x is CommonJS; its default import is the UAParser constructor under Node, tsx and vitest.
import UAParser from 'ua-parser-js';
import { ConfigError } from '../errors.js';

/** Options of {@link createUaReducer}. */
export interface UaReducerOptions {
  /**
   * How many distinct User-Agent strings to keep parsed.
   * @default 1000
   */
  maxEntries?: number;
  /**
   * Whether the browser's major version is part of the result (`chrome|windows|desktop|126`).
   * @default false
   */
  majorVersion?: boolean;
}

// Longer headers are hostile or broken; cutting them bounds both parse time and cache memory.
const MAX_UA_LENGTH = 512;
// '|' separates the fields here and a line break separates the fingerprint's signals.
const UNSAFE = /[|\r\n]/g;

const field = (value: string | undefined, fallback: string): string => {
  const clean = value?.replace(UNSAFE, '').trim().toLowerCase();
  return clean ? clean : fallback;
};

/**
 * Builds a function that reduces a User-Agent header to a coarse, stable description:
 * browser family, OS name and device type (`desktop` when the parser names none), all
 * lower-case, plus the major version on request. Minor browser updates keep the result.
 * This is the one module that knows the parser, so another can be swapped in here.
 *
 * @example
 * ```ts
 * const reduce = createUaReducer();
 * reduce('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36');
 * // 'chrome|windows|desktop'
 * ```
 */
export function createUaReducer(options: UaReducerOptions = {}): (ua: string | undefined) => string {
  const { maxEntries = 1000, majorVersion = false } = options;
  if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
    throw new ConfigError(`maxEntries must be a whole number of 1 or more (e.g. 1000); got ${maxEntries}`);
  }
  // Keyed by the (cut) header itself: the cache lives in this process only and is never logged
  // or stored. A cryptographic hash as key would cost as much as the HMAC the fingerprint
  // already pays, and a cheap one could be made to collide by a hostile client.
  const cache = new LRUCache<string, string>({ max: maxEntries });
  const parser = new UAParser();

  return (ua) => {
    const key = ua === undefined ? '' : ua.length > MAX_UA_LENGTH ? ua.slice(0, MAX_UA_LENGTH) : ua;
    const cached = cache.get(key);
    if (cached !== undefined) return cached;
    parser.setUA(key);
    const browser = parser.getBrowser();
    let reduced = `${field(browser.name, 'unknown')}|${field(parser.getOS().name, 'unknown')}|${field(parser.getDevice().type, 'desktop')}`;
    if (majorVersion) reduced += `|${field(browser.major, '0')}`;
    cache.set(key, reduced);
    return reduced;
  };
}
