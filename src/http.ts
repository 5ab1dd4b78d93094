/**
 * The neutral views of a request and a response that the core works on. Adapters build
 * them; nothing in the core imports a framework. A node:http pair (and so Express's) is
 * turned into views by {@link nodeRequestView} and {@link nodeResponseView}.
 */

/** What the core reads of a request. */
export interface RequestView {
  /** A header by lower-case name; repeated headers joined with `, ` (cookies with `; `). */
  header(name: string): string | undefined;
  /** The address of the TCP peer: the client, or the nearest proxy. */
  readonly peerAddress: string | undefined;
  /** Whether the connection to this server is TLS. */
  readonly encrypted: boolean;
  /** The framework's own request object, for custom resolvers. */
  readonly raw: unknown;
}

/** What the core writes to a response. */
export interface ResponseView {
  readonly headersSent: boolean;
  getHeader(name: string): string | undefined;
  setHeader(name: string, value: string): void;
  /** Adds a value to a list header such as `Vary`. */
  appendHeader(name: string, value: string): void;
  /**
   * Sets a cookie: `name` is the cookie's name and `serialized` the whole Set-Cookie value.
   * A later call for the same name in the same response replaces the earlier one; cookies
   * set by others are kept.
   */
  setCookie(name: string, serialized: string): void;
}

/** The parts of a node:http `IncomingMessage` the core reads (Express's `req` is one). */
export interface NodeLikeRequest {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly socket?: { readonly remoteAddress?: string | undefined; readonly encrypted?: boolean } | null;
}

/** The parts of a node:http `ServerResponse` the core writes (Express's `res` is one). */
export interface NodeLikeResponse {
  readonly headersSent: boolean;
  getHeader(name: string): number | string | string[] | undefined;
  setHeader(name: string, value: number | string | readonly string[]): unknown;
}

/** A request view over a node:http request. */
export function nodeRequestView(req: NodeLikeRequest): RequestView {
  return {
    header(name) {
      const value = req.headers[name];
      if (value === undefined || typeof value === 'string') return value;
      return value.join(name === 'cookie' ? '; ' : ', ');
    },
    get peerAddress() {
      return req.socket?.remoteAddress;
    },
    get encrypted() {
      return req.socket?.encrypted === true;
    },
    raw: req,
  };
}

const headerValues = (value: number | string | readonly string[] | undefined): string[] =>
  value === undefined ? [] : Array.isArray(value) ? [...value] : [String(value)];

/** A response view over a node:http response. */
export function nodeResponseView(res: NodeLikeResponse): ResponseView {
  const ours = new Map<string, string>();
  let written = new Set<string>();

  return {
    get headersSent() {
      return res.headersSent;
    },
    getHeader(name) {
      const value = res.getHeader(name);
      return value === undefined ? undefined : headerValues(value).join(', ');
    },
    setHeader(name, value) {
      res.setHeader(name, value);
    },
    appendHeader(name, value) {
      const current = headerValues(res.getHeader(name));
      if (!current.some((v) => v.split(',').some((part) => part.trim().toLowerCase() === value.toLowerCase()))) {
        res.setHeader(name, current.length ? `${current.join(', ')}, ${value}` : value);
      }
    },
    setCookie(name, serialized) {
      ours.set(name, serialized);
      const others = headerValues(res.getHeader('set-cookie')).filter((v) => !written.has(v));
      written = new Set(ours.values());
      res.setHeader('set-cookie', [...others, ...written]);
    },
  };
}
