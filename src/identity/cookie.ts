import { type SerializeOptions, stringifySetCookie } from 'cookie';
import { type KeyRing, perKeyRing } from '../crypto.js';
import { type Duration, toMs } from '../duration.js';
import { ConfigError, type CookieError } from '../errors.js';
import { type RecentMap, recentMap } from '../recent-map.js';
import { dropsSecureCookies, insecureCookieError } from '../secure-cookie.js';
import type { Identity, Resolver, ResolverContext } from './types.js';

// The object form: cookie 2 dropped `serialize` and the (name, value, options) call.
const serialize = (name: string, value: string, options: SerializeOptions) =>
  stringifySetCookie({ ...options, name, value });

/** Options of {@link cookieResolver}. */
export interface CookieResolverOptions {
  /**
   * The cookie's name.
   * @default 'vsid'
   */
  name?: string;
  /**
   * Prefix the name with `__Host-`: the browser then keeps the cookie only when it is
   * Secure, has Path=/ and no Domain, so a sibling subdomain cannot plant one.
   * @default false
   */
  hostPrefix?: boolean;
  /**
   * How long the browser keeps the cookie, and how long a signed cookie stays valid here.
   * Browsers cap cookie lifetimes at 400 days.
   * @default '400d'
   */
  maxAge?: Duration;
  /**
   * How old a cookie may get before a response re-sends it with a new lifetime.
   * @default '7d'
   */
  refreshAfter?: Duration;
  /** @default undefined: the cookie goes back only to the host that set it */
  domain?: string;
  /** @default 'lax' */
  sameSite?: 'lax' | 'strict' | 'none';
  /**
   * `'auto'` marks the cookie Secure when the request came over HTTPS, directly or per a
   * trusted proxy.
   * @default 'auto'
   */
  secure?: boolean | 'auto';
}

/** What the visitor cookie says, once its signature and age have checked out. */
export interface CookieReading {
  readonly id: string;
  /** Signed by an older secret, or due for refresh: the response should carry it again. */
  readonly reissue: boolean;
}

/** A visitor cookie whose signature checked out: what it says, before its age is checked. */
interface SignedCookie {
  /** The cookie as the client sends it. */
  readonly raw: string;
  readonly id: string;
  readonly issuedMs: number;
  /** Signed by an older secret. */
  readonly rotated: boolean;
  /** What a read says while the cookie needs no reissue: made once, not per request. */
  readonly current: CookieReading;
}

/** A Cookie header that carried a verified visitor cookie. */
interface KnownHeader {
  readonly header: string;
  readonly cookie: SignedCookie;
}

/** What one key ring has verified, each by a {@link sampleKey} and then compared in full. */
interface Verified {
  readonly cookies: RecentMap<number, SignedCookie>;
  readonly headers: RecentMap<number, KnownHeader>;
}

/** The cookie resolver: it reads the visitor cookie and writes it for the chain. */
export interface CookieResolver extends Resolver {
  readonly kind: 'visitor-cookie';
  /** The cookie name as sent, with its prefix. */
  readonly cookieName: string;
  read(ctx: ResolverContext): CookieReading | undefined;
  /** The Set-Cookie value that gives the client `id`. */
  serialize(id: string, ctx: ResolverContext): string;
  /** The Set-Cookie value that removes the cookie from the client. */
  clear(ctx: ResolverContext): string;
  /**
   * The report to make when this cookie goes out Secure (always so with `hostPrefix`) on a
   * request that came over plain http to a host other than localhost: browsers drop such a
   * cookie, so every request is a new visitor. Made once per process; `undefined` otherwise.
   */
  insecureIssue(ctx: ResolverContext): CookieError | undefined;
}

// Browsers drop a Secure cookie set over plain http, except from localhost (a secure context).
let reportedInsecure = false;

const MAX_AGE_CAP_MS = 400 * 86_400_000;
const CLOCK_SKEW_MS = 5 * 60_000;
const MAX_COOKIE_LENGTH = 256;
const VERIFIED_COOKIES = 10_000;
/** Cookie headers that carried a verified cookie, kept when no longer than MAX_HEADER_KEPT. */
const VERIFIED_HEADERS = 10_000;
const MAX_HEADER_KEPT = 512;
/** How many characters of a cookie, and of a Cookie header, make its key among the verified ones. */
const COOKIE_SAMPLES = 5;
const HEADER_SAMPLES = 8;
// Any ID the chain accepts, custom resolvers' short ones ('dev-p1') included: the signature, not the length, protects it.
const ID = /^[A-Za-z0-9_-]{1,128}$/;
const ISSUED = /^[0-9a-z]{1,10}$/;

/**
 * Identifies a returning visitor by a signed, HttpOnly, long-lived cookie. First in the
 * chain by default, so the visitor ID does not change at login or at logout: a valid
 * cookie wins over an auth identity or a fingerprint.
 *
 * The cookie carries `id.issuedAt.signature` (HMAC-SHA256). Anything that does not verify
 * (forged, truncated, too old, from the future, oversized) is treated as absent.
 *
 * @example
 * ```ts
 * createVisitorState({ resolvers: [cookieResolver({ hostPrefix: true })] });
 * ```
 */
export function cookieResolver(options: CookieResolverOptions = {}): CookieResolver {
  const name = options.name ?? 'vsid';
  if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) {
    throw new ConfigError(
      `cookieResolver name ${JSON.stringify(name)} is not a valid cookie name; use letters, digits, '_' or '-'`,
    );
  }
  const hostPrefix = options.hostPrefix ?? false;
  if (hostPrefix && options.domain !== undefined) {
    throw new ConfigError('cookieResolver: a __Host- cookie cannot have a domain; remove domain or hostPrefix');
  }
  const maxAgeMs = Math.min(toMs(options.maxAge ?? '400d', 'cookieResolver maxAge'), MAX_AGE_CAP_MS);
  const refreshAfterMs = toMs(options.refreshAfter ?? '7d', 'cookieResolver refreshAfter');
  const sameSite = options.sameSite ?? 'lax';
  const secureOption = hostPrefix || sameSite === 'none' ? true : (options.secure ?? 'auto');
  const cookieName = hostPrefix ? `__Host-${name}` : name;
  const maxAgeSeconds = Math.floor(maxAgeMs / 1000);

  // A returning visitor sends the same signed cookie on every request, most often in the same
  // Cookie header: the cookies that verified are remembered, so the HMAC runs once per cookie,
  // and so are the headers that carried them, so such a header is not parsed again. Only
  // successes are kept, so forged values cannot fill either; and they are kept per key ring, so
  // two VisitorStates with different secrets that share this resolver never accept each
  // other's cookies.
  const verifiedFor = perKeyRing(
    (): Verified => ({ cookies: recentMap(VERIFIED_COOKIES), headers: recentMap(VERIFIED_HEADERS) }),
  );

  const verify = (keys: KeyRing, verified: Verified, raw: string): SignedCookie | undefined => {
    const key = sampleKey(raw, COOKIE_SAMPLES);
    const known = verified.cookies.get(key);
    if (known?.raw === raw) return known;
    const signed = keys.verify('visitor-cookie', raw);
    if (!signed) return undefined;
    const dot = signed.value.lastIndexOf('.');
    const sliced = signed.value.slice(0, dot);
    const issued = signed.value.slice(dot + 1);
    if (dot < 0 || !ID.test(sliced) || !ISSUED.test(issued)) return undefined;
    const id = standalone(sliced);
    const cookie = {
      raw,
      id,
      issuedMs: Number.parseInt(issued, 36) * 1000,
      rotated: signed.rotated,
      current: Object.freeze({ id, reissue: false }),
    };
    verified.cookies.set(key, cookie);
    return cookie;
  };

  /** The request's visitor cookie, when its signature checks out. */
  const signedCookieOf = (ctx: ResolverContext): SignedCookie | undefined => {
    const header = ctx.header('cookie');
    // The parser takes cookie names from the header as they are written: a header in which the
    // name does not occur has no visitor cookie, and a new visitor's header needs no parse.
    if (header === undefined || !header.includes(cookieName)) return undefined;
    const verified = verifiedFor(ctx.keys);
    // A longer header is parsed each time: keeping it would cost more memory than its parse costs time.
    if (header.length > MAX_HEADER_KEPT) return parsedCookieOf(ctx, verified);
    const key = sampleKey(header, HEADER_SAMPLES);
    const known = verified.headers.get(key);
    // The same header parses to the same cookie: compared in full, it needs no parse.
    if (known?.header === header) return known.cookie;
    const cookie = parsedCookieOf(ctx, verified);
    if (cookie) verified.headers.set(key, { header, cookie });
    return cookie;
  };

  const parsedCookieOf = (ctx: ResolverContext, verified: Verified): SignedCookie | undefined => {
    const raw = ctx.cookies[cookieName];
    if (raw === undefined || raw.length > MAX_COOKIE_LENGTH) return undefined;
    return verify(ctx.keys, verified, raw);
  };

  const read = (ctx: ResolverContext): CookieReading | undefined => {
    const cookie = signedCookieOf(ctx);
    if (!cookie) return undefined;
    const age = ctx.now() - cookie.issuedMs;
    if (age > maxAgeMs || age < -CLOCK_SKEW_MS) return undefined;
    return cookie.rotated || age > refreshAfterMs ? { id: cookie.id, reissue: true } : cookie.current;
  };

  const attributesOf = (secure: boolean) =>
    serialize(cookieName, '', {
      httpOnly: true,
      path: '/',
      sameSite,
      secure,
      maxAge: maxAgeSeconds,
      ...(options.domain === undefined ? {} : { domain: options.domain }),
    }).slice(cookieName.length + 1);
  const attributes = { secure: attributesOf(true), plain: attributesOf(false) };

  const write = (value: string, maxAge: number, ctx: ResolverContext) =>
    serialize(cookieName, value, {
      httpOnly: true,
      path: '/',
      sameSite,
      secure: secureOption === 'auto' ? ctx.secure : secureOption,
      maxAge,
      ...(options.domain === undefined ? {} : { domain: options.domain }),
    });

  return {
    name: 'cookie',
    kind: 'visitor-cookie',
    cookieName,
    read,
    resolve(ctx): Identity | undefined {
      const reading = read(ctx);
      return reading && { id: reading.id, confidence: 'high' };
    },
    serialize(id, ctx) {
      const issued = Math.floor(ctx.now() / 1000).toString(36);
      // The signed value is base64url and dots only, so it needs no encoding: the attributes,
      // written once by the cookie package, follow it as they are.
      const secure = secureOption === 'auto' ? ctx.secure : secureOption;
      return `${cookieName}=${ctx.keys.sign('visitor-cookie', `${id}.${issued}`)}${secure ? attributes.secure : attributes.plain}`;
    },
    clear(ctx) {
      return write('', 0, ctx);
    },
    insecureIssue(ctx) {
      if (reportedInsecure || secureOption !== true || !dropsSecureCookies(ctx)) return undefined;
      reportedInsecure = true;
      return insecureCookieError({
        cookies: `the visitor cookie ${cookieName}`,
        plural: false,
        hostPrefix,
        sameSite,
        secure: options.secure,
        lost: 'every request is a new visitor',
        once: 'process',
      });
    },
  };
}

/**
 * An ID as a string of its own. A slice of a longer string is, in V8, a view into that string,
 * which a Map hashes and compares more slowly as a key: a returning visitor's ID is looked up
 * on every request (about 45 ns more per request, measured), and the view would also keep the
 * whole signed value alive. IDs are ASCII, so latin1 carries them unchanged.
 */
const standalone = (id: string): string => Buffer.from(id, 'latin1').toString('latin1');

/**
 * A small integer made of a text's length and of `count` of its characters, spread across it
 * from the end: a Map hashes it at once, where a string key would be hashed in full on every
 * request. Texts that share a key are told apart by comparing them in full, so a shared key
 * costs a parse or a verification, never a wrong answer.
 */
function sampleKey(text: string, count: number): number {
  const step = Math.max(1, Math.floor(text.length / count));
  let key = text.length;
  for (let i = text.length - 1, taken = 0; i >= 0 && taken < count; i -= step, taken++) {
    key = Math.imul(key ^ text.charCodeAt(i), 0x01000193);
  }
  return key & 0x3fffffff;
}

export const isCookieResolver = (resolver: Resolver): resolver is CookieResolver =>
  (resolver as Partial<CookieResolver>).kind === 'visitor-cookie';
