import { CookieError } from './errors.js';

/** What tells whether a response reaches a secure context: how the request came, and its Host header. */
export interface CookieDestination {
  /** The request came over HTTPS, directly or per a trusted proxy. */
  readonly secure: boolean;
  header?(name: string): string | undefined;
}

/** Whether a Host header names this machine: `localhost`, `*.localhost`, 127.0.0.0/8 or `[::1]`, with any port. */
function isLocalhost(host: string): boolean {
  const end = host.startsWith('[') ? host.indexOf(']') + 1 : host.indexOf(':');
  const name = (end > 0 ? host.slice(0, end) : host).toLowerCase();
  if (name === 'localhost' || name.endsWith('.localhost') || name === '[::1]') return true;
  const parts = name.split('.');
  return parts.length === 4 && parts[0] === '127' && parts.every((part) => /^\d{1,3}$/.test(part));
}

/**
 * Whether browsers drop a Secure cookie set in reply to this request: it came over plain http
 * to a host other than localhost, which browsers count as a secure context (RFC 6265bis: a
 * Secure cookie set from an origin that is not secure is ignored). Without a Host header there
 * is no telling what the browser sees, and the answer is no.
 */
export function dropsSecureCookies(request: CookieDestination): boolean {
  if (request.secure) return false;
  const host = request.header?.('host');
  return host !== undefined && !isLocalhost(host);
}

/** What {@link insecureCookieError} names. */
export interface InsecureCookies {
  /** The cookies, as the message opens: "the visitor cookie vsid". */
  readonly cookies: string;
  readonly plural: boolean;
  /** `__Host-` prefixed, hence always Secure. */
  readonly hostPrefix: boolean;
  readonly sameSite: 'lax' | 'strict' | 'none';
  /** The `secure` option as given. */
  readonly secure: boolean | 'auto' | undefined;
  /** What the application loses: "every request is a new visitor". */
  readonly lost: string;
  /** How often it is reported: "process", "store". */
  readonly once: string;
}

/**
 * The report that Secure cookies went out over plain http to a host other than localhost: why
 * they are Secure (`hostPrefix`, `sameSite: 'none'` or `secure: true`), what is lost, and how to
 * fix it.
 */
export function insecureCookieError(what: InsecureCookies): CookieError {
  const them = what.plural ? 'them' : 'it';
  const why = what.hostPrefix
    ? `hostPrefix makes ${them} Secure`
    : what.sameSite === 'none'
      ? `sameSite 'none' makes ${them} Secure`
      : 'secure is true';
  const fix = what.hostPrefix
    ? 'or drop hostPrefix'
    : what.sameSite === 'none'
      ? `or use sameSite 'lax'${what.secure === true ? " with secure: 'auto'" : ''}`
      : "or set secure: 'auto'";
  return new CookieError(
    `${what.cookies} went out over plain http to a host other than localhost, and ${why}, so browsers drop ${them} and ${what.lost}: ` +
      `serve the site over HTTPS (behind a TLS proxy, name it in trustProxy so its X-Forwarded-Proto counts), ${fix}. Reported once per ${what.once}`,
  );
}
