import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

// What every bench server works with, so that each answers the same body.

/** The bin (or session field) a returning visitor reads on every measured request. */
export const BIN = 'bench:geo';

/** The value stored under {@link BIN} by the setup request, and the body of every measured response. */
export const GEO = { city: 'Lyon', country: 'FR', visits: 3, consent: true } as const;

export const SECRET = 'bench-secret-4b1c7e0d9a2f48e6b3c5d7e9f1a3b5c7';

/** The path a first request takes to be given a cookie and to store {@link GEO}. */
export const SETUP_PATH = '/setup';

/** What a bench server sends its parent once it listens. */
export interface Listening {
  readonly port: number;
}

/**
 * Listens on a free loopback port, tells the parent which, and exits with the parent: a
 * server forked by the bench never outlives it.
 *
 * @example
 * ```ts
 * listen(createServer((req, res) => res.end('ok')));
 * ```
 */
export function listen(server: Server): void {
  if (!process.send) throw new Error('a bench server runs as a child of bench/http.bench.ts (forked, with IPC)');
  process.on('disconnect', () => process.exit(0));
  server.listen(0, '127.0.0.1', () => {
    const listening: Listening = { port: (server.address() as AddressInfo).port };
    process.send?.(listening);
  });
}
