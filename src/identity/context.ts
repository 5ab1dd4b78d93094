import { parseCookie as parseCookies } from 'cookie';
import type { KeyRing } from '../crypto.js';
import type { RequestView, ResponseView } from '../http.js';
import type { StorageRequest } from '../state/storage.js';
import type { ProxyTrust } from './client-ip.js';
import type { ResolverContext } from './types.js';

/** What every request of one VisitorState shares. */
export interface ContextShared {
  readonly proxy: ProxyTrust;
  readonly keys: KeyRing;
  readonly now: () => number;
  readonly linkedVisitor: (userId: string | number) => Promise<string | undefined>;
}

/**
 * One request as resolvers and request-scoped storages see it; cookies, client address and
 * scheme are worked out on first use. A class rather than an object literal: V8 gives each
 * object literal that has a `get` a hidden class of its own, about a microsecond per request.
 */
export class RequestContext implements ResolverContext, StorageRequest {
  // Own properties, not methods: a resolver may pass them around unbound.
  readonly now: () => number;
  readonly linkedVisitor: (userId: string | number) => Promise<string | undefined>;
  readonly req: unknown;
  readonly keys: KeyRing;
  readonly response: ResponseView | undefined;
  readonly #request: RequestView;
  readonly #proxy: ProxyTrust;
  #cookies: Record<string, string | undefined> | undefined;
  #clientIp: string | undefined | null = null;
  #secure: boolean | undefined;

  constructor(request: RequestView, response: ResponseView | undefined, shared: ContextShared) {
    this.#request = request;
    this.#proxy = shared.proxy;
    this.now = shared.now;
    this.linkedVisitor = shared.linkedVisitor;
    this.req = request.raw;
    this.keys = shared.keys;
    this.response = response;
  }

  header(name: string): string | undefined {
    return this.#request.header(name);
  }

  get cookies(): Record<string, string | undefined> {
    this.#cookies ??= parseCookies(this.#request.header('cookie') ?? '');
    return this.#cookies;
  }

  get clientIp(): string | undefined {
    if (this.#clientIp === null) this.#clientIp = this.#proxy.clientIp(this.#request);
    return this.#clientIp;
  }

  get secure(): boolean {
    this.#secure ??= this.#proxy.isSecure(this.#request);
    return this.#secure;
  }
}
