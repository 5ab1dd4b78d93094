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
  /** node:http's event, used to let go of the request's visitor once the response is over. */
  once?(event: 'close', listener: () => void): unknown;
}

/**
 * A request view over a node:http request, for code that calls `resolveView` itself. `raw` is
 * what custom resolvers get as `ctx.req`: the framework's own request, when it wraps node's.
 *
 * @example
 * ```ts
 * const visitor = await visitors.resolveView(nodeRequestView(req), nodeResponseView(res), req);
 * ```
 */
export function nodeRequestView(req: NodeLikeRequest, raw: unknown = req): RequestView {
  return new NodeRequestView(req, raw);
}

// A class: one small object per request, its method on the prototype, the socket read only if asked.
class NodeRequestView implements RequestView {
  readonly #req: NodeLikeRequest;
  readonly raw: unknown;

  constructor(req: NodeLikeRequest, raw: unknown) {
    this.#req = req;
    this.raw = raw;
  }

  header(name: string): string | undefined {
    const value = this.#req.headers[name];
    if (value === undefined || typeof value === 'string') return value;
    return value.join(name === 'cookie' ? '; ' : ', ');
  }

  get peerAddress(): string | undefined {
    return this.#req.socket?.remoteAddress;
  }

  get encrypted(): boolean {
    return this.#req.socket?.encrypted === true;
  }
}

const headerValues = (value: number | string | readonly string[] | undefined): string[] =>
  value === undefined ? [] : Array.isArray(value) ? [...value] : [String(value)];

// A class rather than an object literal: V8 gives each object literal that has a `get` a
// hidden class of its own, which costs about a microsecond per request and promotes garbage.
class NodeResponseView implements ResponseView {
  readonly #res: NodeLikeResponse;
  // Made on the first cookie: most responses to a returning visitor set none.
  #ours: Map<string, string> | undefined;
  #written: Set<string> | undefined;

  constructor(res: NodeLikeResponse) {
    this.#res = res;
  }

  get headersSent(): boolean {
    return this.#res.headersSent;
  }

  getHeader(name: string): string | undefined {
    const value = this.#res.getHeader(name);
    return value === undefined ? undefined : headerValues(value).join(', ');
  }

  setHeader(name: string, value: string): void {
    this.#res.setHeader(name, value);
  }

  appendHeader(name: string, value: string): void {
    const current = headerValues(this.#res.getHeader(name));
    if (!current.some((v) => v.split(',').some((part) => part.trim().toLowerCase() === value.toLowerCase()))) {
      this.#res.setHeader(name, current.length ? `${current.join(', ')}, ${value}` : value);
    }
  }

  setCookie(name: string, serialized: string): void {
    this.#ours ??= new Map();
    this.#ours.set(name, serialized);
    const written = this.#written;
    const others = headerValues(this.#res.getHeader('set-cookie')).filter((v) => !written?.has(v));
    this.#written = new Set(this.#ours.values());
    this.#res.setHeader('set-cookie', [...others, ...this.#written]);
  }
}

/**
 * A response view over a node:http response: Set-Cookie lines of others are kept, and a
 * cookie set twice in one response is sent once.
 *
 * @example
 * ```ts
 * const view = nodeResponseView(res);
 * view.setCookie('vsid', 'vsid=…; Path=/; HttpOnly');
 * ```
 */
export function nodeResponseView(res: NodeLikeResponse): ResponseView {
  return new NodeResponseView(res);
}
