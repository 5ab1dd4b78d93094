import type { Server } from 'node:http';
import { ConfigError } from '../errors.js';

/**
 * The default budget of the Cookie header for visitor-state's cookies (the visitor cookie and
 * every chunk): 6 KiB, which leaves 2 KiB for the site's other cookies inside nginx's default
 * 8 KB buffer for one header line (`large_client_header_buffers 4 8k`).
 */
export const DEFAULT_BUDGET = 6_144;

/**
 * What the budget sets aside for the visitor cookie and its `; `: a default `vsid` cookie takes
 * 80 bytes with it, a `__Host-vsid` 87, and the resolver reads no value longer than 256 characters.
 */
export const VISITOR_COOKIE_BYTES = 256;

/**
 * What a budget must leave of the server's limit on request headers: the request line and the
 * browser's other headers (Chromium 156 sends 580 to 690 bytes besides the Cookie header on a
 * short URL, measured), a long URL and Referer, and the site's other cookies.
 */
export const REQUEST_ROOM = 4_096;

/** Node's own default for `maxHeaderSize`, where `node:http` cannot be asked. */
const NODE_DEFAULT_HEADER_SIZE = 16_384;

/**
 * A server whose limit on request headers the budget must fit: a node:http or node:https
 * server, or just its `{ maxHeaderSize }`.
 */
export type HeaderLimited =
  | Server
  | {
      /** As given to `http.createServer({ maxHeaderSize })`; `undefined` means the process default. */
      readonly maxHeaderSize?: number | undefined;
    };

/**
 * The limit on the request line and headers together that a request to this process meets:
 * the server's own, else `node:http`'s `maxHeaderSize` (16,384 unless `--max-http-header-size`
 * says otherwise). Read through `process.getBuiltinModule`, so runtimes without `node:http`
 * (a Worker) still load this module; there Node's default stands in.
 */
export function headerLimit(server?: HeaderLimited): { bytes: number; from: string } {
  // node:http keeps the option on the server, though its types do not say so.
  const own = (server as { maxHeaderSize?: number } | undefined)?.maxHeaderSize;
  if (own !== undefined) return { bytes: own, from: "the server's maxHeaderSize" };
  const http = (
    process as { getBuiltinModule?: (id: string) => { maxHeaderSize?: number } | undefined }
  ).getBuiltinModule?.('node:http');
  const bytes = http?.maxHeaderSize;
  return typeof bytes === 'number'
    ? { bytes, from: "node:http's maxHeaderSize" }
    : { bytes: NODE_DEFAULT_HEADER_SIZE, from: "Node's default maxHeaderSize" };
}

/**
 * Refuses, with a `ConfigError` that says how to fix it, a budget that would make the browser's
 * requests too large for the server: past that, every request of the browser to the host gets
 * `431` before the application sees it, and nothing can clear the cookies.
 */
export function checkBudget(maxBytes: number, server?: HeaderLimited): void {
  const limit = headerLimit(server);
  const largest = limit.bytes - REQUEST_ROOM;
  if (maxBytes <= largest) return;
  const needed = maxBytes + REQUEST_ROOM;
  throw new ConfigError(
    `cookie storage maxBytes ${maxBytes} does not fit ${limit.from} of ${limit.bytes} bytes with ${REQUEST_ROOM} bytes left for the request line and the browser's other headers: ` +
      `lower maxBytes to at most ${largest}, or raise the limit to at least ${needed} ` +
      `(node --max-http-header-size=${needed}, or http.createServer({ maxHeaderSize: ${needed} }) passed as cookieStorage({ server }))`,
  );
}
