import { StorageError } from '../errors.js';
import { describeStore, loadPeer } from './load-peer.js';
import { pauseAfterLostRace } from './lost-race.js';
import type { Storage, StorageOptions, StoredBin } from './storage.js';

const POOL_SIZE = 5;
const CONNECT_TIMEOUT_MS = 2_000;
const DEFAULT_TIMEOUT_MS = 250;
const SWEEP_BATCH = 1_000;
const DEFAULT_PAGE = 1_000;
const MAX_PAGE = 10_000;
/** Compare-and-set attempts of one `update` before it gives up; one process's own updates of a bin queue up first. */
const UPDATE_TRIES = 50;

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS visitor_state (
    ns text NOT NULL,
    visitor text NOT NULL,
    bin text NOT NULL,
    value text NOT NULL,
    expires bigint NOT NULL,
    PRIMARY KEY (ns, visitor, bin)
  )`,
  'CREATE INDEX IF NOT EXISTS visitor_state_ns_expires ON visitor_state (ns, expires)',
];

// Named statements are prepared once per pooled connection.
const SQL = {
  get: 'SELECT value FROM visitor_state WHERE ns = $1 AND visitor = $2 AND bin = $3 AND expires > $4',
  getMany: 'SELECT bin, value FROM visitor_state WHERE ns = $1 AND visitor = $2 AND bin = ANY($3) AND expires > $4',
  set: `INSERT INTO visitor_state (ns, visitor, bin, value, expires) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (ns, visitor, bin) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires`,
  // Takes the row over only when it has expired: one statement, so two writers cannot both win.
  add: `INSERT INTO visitor_state (ns, visitor, bin, value, expires) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (ns, visitor, bin) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires
    WHERE visitor_state.expires <= $6`,
  delete: 'DELETE FROM visitor_state WHERE ns = $1 AND visitor = $2 AND bin = $3',
  // The row as it is, expired or not: what `update` compares against.
  current: 'SELECT value, expires FROM visitor_state WHERE ns = $1 AND visitor = $2 AND bin = $3',
  // The compare-and-set of `update`: each writes only if the row is still what was read. A
  // concurrent commit makes PostgreSQL check the WHERE again on the new row, so one wins.
  insertIfAbsent: `INSERT INTO visitor_state (ns, visitor, bin, value, expires) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (ns, visitor, bin) DO NOTHING`,
  replaceIf: `UPDATE visitor_state SET value = $4, expires = $5
    WHERE ns = $1 AND visitor = $2 AND bin = $3 AND value = $6 AND expires = $7`,
  deleteIf: 'DELETE FROM visitor_state WHERE ns = $1 AND visitor = $2 AND bin = $3 AND value = $4 AND expires = $5',
  bins: 'SELECT bin FROM visitor_state WHERE ns = $1 AND visitor = $2 AND expires > $3',
  entries: 'SELECT bin, value, expires FROM visitor_state WHERE ns = $1 AND visitor = $2 AND expires > $3',
  // The primary key's order: each page is an index range that starts where the last one ended.
  visitors: `SELECT DISTINCT visitor FROM visitor_state WHERE ns = $1 AND visitor > $2 AND expires > $3
    ORDER BY visitor LIMIT $4`,
  // The outer `expires <=` is checked again on rows a concurrent UPSERT renewed, so a renewed
  // bin survives; SKIP LOCKED lets two sweepers (two servers) share the work without waiting.
  sweep: `DELETE FROM visitor_state WHERE ns = $1 AND expires <= $2 AND (ns, visitor, bin) IN
    (SELECT ns, visitor, bin FROM visitor_state WHERE ns = $1 AND expires <= $2 LIMIT ${SWEEP_BATCH} FOR UPDATE SKIP LOCKED)`,
} as const;

const codeOf = (error: unknown): string =>
  error instanceof Error ? String((error as { code?: unknown }).code ?? '') : '';

// CREATE … IF NOT EXISTS run by two processes at once can still collide in the catalog.
const RACE_CODES = new Set([
  '23505' /* unique_violation */,
  '42P07' /* duplicate_table */,
  '42710' /* duplicate_object */,
]);

/** undefined_table: someone dropped the table under a running application. */
const UNDEFINED_TABLE = '42P01';

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** The columns a statement returns, each as text (`pg` gives a bigint as a string). */
type Row = { readonly bin: string; readonly value: string; readonly expires: string; readonly visitor: string };

/**
 * Storage in PostgreSQL (`pg` must be installed): table `visitor_state`, one row per bin,
 * expiry in an indexed column. Expired rows are hidden at once and removed by `sweep()`,
 * which deletes this namespace's expired rows in batches. Commits do not wait for the
 * disk (`synchronous_commit=off` for its own connections). Every ability of the storage
 * contract but `peek` is here; `update` is a compare-and-set on the row, retried, so two
 * servers incrementing one counter lose nothing.
 *
 * The factory does not fail because the server is down: it waits at most `timeoutMs` for
 * the table, reports what went wrong (the server's own words, such as `role "app" does not
 * exist`, are the `cause`), and the table is created by the first operation that reaches the
 * server. A table dropped while the application runs is created again. A server restart
 * costs the calls made while it is down: broken connections are reported, not thrown, and
 * the pool opens new ones when the server is back.
 *
 * @example
 * ```ts
 * const storage = await postgresStorage(new URL(process.env.DATABASE_URL!), {
 *   namespace: 'vs',
 *   maxEntries: 100_000,
 *   report: console.error,
 * });
 * ```
 */
export async function postgresStorage(url: URL, options: StorageOptions): Promise<Storage> {
  const { default: pg } = await loadPeer<typeof import('pg')>('pg', url);
  const store = describeStore(url);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const now = options.now ?? Date.now;
  const pool = new pg.Pool({
    connectionString: url.href,
    max: POOL_SIZE,
    // Long enough for a server across a network; a request gives up at its own timeout before.
    connectionTimeoutMillis: Math.max(CONNECT_TIMEOUT_MS, timeoutMs),
    // Visitor state is small and rebuildable: a crash may lose the last moment of writes rather
    // than every write waiting for a disk flush (as SQLite's synchronous=NORMAL). A URL's own
    // `?options=` wins over this.
    options: '-c synchronous_commit=off',
  });
  // An idle connection that breaks (a server restart) is reported here; without a listener it would crash the process.
  pool.on('error', (error) =>
    options.report(
      new StorageError(`store '${store}': a pooled connection failed (${messageOf(error)})`, { cause: error }),
    ),
  );

  const createSchema = async () => {
    for (const sql of SCHEMA) {
      try {
        await pool.query(sql);
      } catch (error) {
        if (!RACE_CODES.has(codeOf(error))) throw error;
      }
    }
  };

  let schema: Promise<void> | undefined;
  // Until the table exists every operation waits for it; a failed attempt is tried again by the next one.
  const ready = (): Promise<void> => {
    schema ??= createSchema().catch((error: unknown) => {
      schema = undefined;
      throw error;
    });
    return schema;
  };

  const query = async (name: keyof typeof SQL, values: unknown[]) => {
    await ready();
    const config = { name: `visitor_state_${name}`, text: SQL[name], values };
    try {
      return await pool.query<Row>(config);
    } catch (error) {
      if (codeOf(error) !== UNDEFINED_TABLE) throw error;
      // The table was dropped: create it again, and try once more.
      options.report(new StorageError(`store '${store}': table visitor_state was dropped; creating it again`));
      schema = undefined;
      await ready();
      return pool.query<Row>(config);
    }
  };

  let timer: ReturnType<typeof setTimeout> | undefined;
  const opening = ready().then(
    () => true,
    (error: unknown) => {
      options.report(
        new StorageError(`store '${store}': cannot create the table yet (${messageOf(error)}); will retry`, {
          cause: error,
        }),
      );
      return false;
    },
  );
  // Opening waits for the server no longer than one call may: a server that hangs does not hold up the start.
  await Promise.race([opening, new Promise((done) => (timer = setTimeout(done, timeoutMs)))]);
  clearTimeout(timer);

  const ns = options.namespace;
  const parse = (value: string | undefined): unknown => (value === undefined ? undefined : JSON.parse(value));

  /** One process's updates of one bin run one after the other, so they never race each other's compare-and-set. */
  const queues = new Map<string, Promise<unknown>>();
  const queued = <T>(key: string, run: () => Promise<T>): Promise<T> => {
    const before = queues.get(key) ?? Promise.resolve();
    const mine = before.then(run, run);
    const tail = mine.then(
      () => {},
      () => {},
    );
    queues.set(key, tail);
    void tail.then(() => {
      if (queues.get(key) === tail) queues.delete(key);
    });
    return mine;
  };

  const compareAndSet = async (
    visitorId: string,
    bin: string,
    next: (current: unknown) => unknown,
    ttlMs: number,
  ): Promise<unknown> => {
    for (let attempt = 0; attempt < UPDATE_TRIES; attempt++) {
      const at = now();
      const { rows } = await query('current', [ns, visitorId, bin]);
      const row = rows[0];
      const result = next(row && Number(row.expires) > at ? JSON.parse(row.value) : undefined);
      let written: number | null;
      if (result === undefined) {
        if (!row) return undefined;
        ({ rowCount: written } = await query('deleteIf', [ns, visitorId, bin, row.value, row.expires]));
      } else {
        const value = JSON.stringify(result);
        const expires = Math.ceil(at + ttlMs);
        ({ rowCount: written } = row
          ? await query('replaceIf', [ns, visitorId, bin, value, expires, row.value, row.expires])
          : await query('insertIfAbsent', [ns, visitorId, bin, value, expires]));
      }
      if ((written ?? 0) > 0) return result;
      // Another server wrote the bin between the read and the write: read it again, after a pause.
      await pauseAfterLostRace(attempt);
    }
    throw new StorageError(
      `store '${store}': update of bin '${bin}' lost ${UPDATE_TRIES} races in a row to other writers; nothing written`,
    );
  };

  return {
    async get(visitorId, bin) {
      const { rows } = await query('get', [ns, visitorId, bin, now()]);
      return parse(rows[0]?.value);
    },

    async getMany(visitorId, bins) {
      if (bins.length === 0) return [];
      const { rows } = await query('getMany', [ns, visitorId, bins, now()]);
      const found = new Map(rows.map((row) => [row.bin, row.value]));
      return bins.map((bin) => parse(found.get(bin)));
    },

    async set(visitorId, bin, data, ttlMs) {
      await query('set', [ns, visitorId, bin, JSON.stringify(data), Math.ceil(now() + ttlMs)]);
    },

    async add(visitorId, bin, data, ttlMs) {
      const at = now();
      const { rowCount } = await query('add', [ns, visitorId, bin, JSON.stringify(data), Math.ceil(at + ttlMs), at]);
      return (rowCount ?? 0) > 0;
    },

    update(visitorId, bin, next, ttlMs) {
      return queued(`${visitorId}\u0000${bin}`, () => compareAndSet(visitorId, bin, next, ttlMs));
    },

    async delete(visitorId, bin) {
      await query('delete', [ns, visitorId, bin]);
    },

    async bins(visitorId) {
      const { rows } = await query('bins', [ns, visitorId, now()]);
      return rows.map((row) => row.bin);
    },

    async entries(visitorId) {
      const { rows } = await query('entries', [ns, visitorId, now()]);
      return rows.map(
        (row): StoredBin => ({ bin: row.bin, data: JSON.parse(row.value), expiresAt: Number(row.expires) }),
      );
    },

    async visitors(page = {}) {
      const limit = Math.min(MAX_PAGE, Math.max(1, Math.floor(page.limit ?? DEFAULT_PAGE)));
      const { rows } = await query('visitors', [ns, page.next ?? '', now(), limit]);
      const ids = rows.map((row) => row.visitor);
      const last = ids[ids.length - 1];
      return ids.length === limit && last !== undefined ? { ids, next: last } : { ids };
    },

    async sweep() {
      const at = now();
      let removed = 0;
      for (;;) {
        const { rowCount } = await query('sweep', [ns, at]);
        removed += rowCount ?? 0;
        if ((rowCount ?? 0) < SWEEP_BATCH) return removed;
      }
    },

    async close() {
      await opening;
      await pool.end();
    },
  };
}
