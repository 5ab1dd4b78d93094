import type { RequestView, ResponseView } from '../http.js';
import type { VisitorState } from '../visitor-state.js';
import { type LazyVisitor, lazyVisitor } from './lazy.js';

/**
 * The visitor of one Fetch-API request and the headers its resolution produced. A Fetch
 * handler builds its `Response` only at the end, so the headers are collected and applied to
 * that response afterwards.
 */
export interface FetchScope {
  readonly visitor: LazyVisitor;
  /**
   * Writes the collected headers: each Set-Cookie line appended, `Vary` tokens merged, and a
   * header such as `Cache-Control` only where the response has none (the handler's choice wins).
   * Throws the runtime's `TypeError` when `headers` are immutable, before changing anything.
   * Afterwards the response counts as sent: state written later is reported, not lost silently.
   */
  applyTo(headers: Headers): void;
  /** {@link FetchScope.applyTo} on the response, or on a copy when its headers are immutable. */
  apply(response: Response): Response;
}

const hasToken = (list: string | null, token: string): boolean =>
  (list ?? '').split(',').some((part) => part.trim().toLowerCase() === token.toLowerCase());

/** The core's response view over headers collected for a response that does not exist yet. */
function collectingResponse() {
  const single = new Map<string, string>();
  const lists = new Map<string, string[]>();
  const cookies = new Map<string, string>();
  let sent = false;

  const view: ResponseView = {
    get headersSent() {
      return sent;
    },
    getHeader(name) {
      return single.get(name) ?? lists.get(name)?.join(', ');
    },
    setHeader(name, value) {
      single.set(name, value);
    },
    appendHeader(name, value) {
      const list = lists.get(name) ?? [];
      if (!hasToken(list.join(','), value)) list.push(value);
      lists.set(name, list);
    },
    setCookie(name, serialized) {
      cookies.set(name, serialized);
    },
  };

  return {
    view,
    applyTo(headers: Headers) {
      for (const [name, value] of single) if (!headers.has(name)) headers.set(name, value);
      for (const [name, values] of lists) {
        for (const value of values) {
          const current = headers.get(name);
          // `Vary: *` already says "never reuse"; adding to it changes nothing.
          if (!hasToken(current, value) && !hasToken(current, '*')) headers.append(name, value);
        }
      }
      for (const line of cookies.values()) headers.append('set-cookie', line);
      sent = true;
    },
  };
}

/** What the core reads of a Fetch `Request`. The peer address is not in it: the runtime gives it. */
export function fetchRequestView(request: Request, peerAddress: () => string | undefined, raw: unknown): RequestView {
  return {
    header: (name) => request.headers.get(name) ?? undefined,
    peerAddress: peerAddress(),
    encrypted: request.url.startsWith('https:'),
    raw,
  };
}

/**
 * A {@link FetchScope} for one request; nothing is resolved until the visitor is used.
 * `key` identifies the request for the core's once-per-request resolution.
 */
export function fetchScope(visitors: VisitorState, request: RequestView, key: object): FetchScope {
  const collected = collectingResponse();
  const visitor = lazyVisitor(() => visitors.resolveView(request, collected.view, key));
  return {
    visitor,
    applyTo: (headers) => collected.applyTo(headers),
    apply(response) {
      try {
        collected.applyTo(response.headers);
        return response;
      } catch (error) {
        // A Response from fetch() or Response.redirect() has immutable headers.
        if (!(error instanceof TypeError)) throw error;
        const copy = new Response(response.body, response);
        collected.applyTo(copy.headers);
        return copy;
      }
    },
  };
}
