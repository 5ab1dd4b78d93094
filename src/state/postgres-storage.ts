import { StorageError } from '../errors.js';
import { describeStore, loadPeer } from './load-peer.js';
import { readsFromJsonText, type Storage, type StorageOptions } from './storage.js';

const POOL_SIZE = 5;
const CONNECT_TIMEOUT_MS = 2_000;
const SWEEP_BATCH = 1_000;

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
  bins: 'SELECT bin FROM visitor_state WHERE ns = $1 AND visitor = $2 AND expires > $3',
  // The outer `expires <=` is checked again on rows a concurrent UPSERT renewed, so a renewed
  // bin survives; SKIP LOCKED lets two sweepers (two servers) share the work without waiting.
  sweep: `DELETE FROM visitor_state WHERE ns = $1 AND expires <= $2 AND (ns, visitor, bin) IN
    (SELECT ns, visitor, bin FROM visitor_state WHERE ns = $1 AND expires <= $2 LIMIT ${SWEEP_BATCH} FOR UPDATE SKIP LOCKED)`,
} as const;

// CREATE … IF NOT EXISTS run by two processes at once can still collide in the catalog.
const RACE_CODES = new Set([
  '23505' /* unique_violation */,
  '42P07' /* duplicate_table */,
  '42710' /* duplicate_object */,
]);

const isCreationRace = (error: unknown): boolean =>
  error instanceof Error && RACE_CODES.has((error as { code?: string }).code ?? '');

/**
 * Storage in PostgreSQL (`pg` must be installed): table `visitor_state`, one row per bin,
 * expiry in an indexed column. Expired rows are hidden at once and removed by `sweep()`,
 * which deletes this namespace's expired rows in batches. Commits do not wait for the
 * disk (`synchronous_commit=off` for its own connections).
 *
 * The factory does not fail because the server is down: it reports the error, and the
 * table is created by the first operation that reaches the server.
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
  const pool = new pg.Pool({
    connectionString: url.href,
    max: POOL_SIZE,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    // Visitor state is small and rebuildable: a crash may lose the last moment of writes rather
    // than every write waiting for a disk flush (as SQLite's synchronous=NORMAL). A URL's own
    // `?options=` wins over this.
    options: '-c synchronous_commit=off',
  });
  // An idle connection that breaks is reported here; without a listener it would crash the process.
  pool.on('error', (error) =>
    options.report(new StorageError(`store '${store}': a pooled connection failed`, { cause: error })),
  );

  const createSchema = async () => {
    for (const sql of SCHEMA) {
      try {
        await pool.query(sql);
      } catch (error) {
        if (!isCreationRace(error)) throw error;
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

  const query = async <R extends Record<string, unknown>>(name: keyof typeof SQL, values: unknown[]) => {
    await ready();
    return pool.query<R>({ name: `visitor_state_${name}`, text: SQL[name], values });
  };

  await ready().catch((error: unknown) =>
    options.report(new StorageError(`store '${store}': cannot create the table yet; will retry`, { cause: error })),
  );

  const ns = options.namespace;

  return {
    ...readsFromJsonText({
      async get(visitorId, bin) {
        const { rows } = await query<{ value: string }>('get', [ns, visitorId, bin, Date.now()]);
        return rows[0]?.value;
      },
      async getMany(visitorId, bins) {
        if (bins.length === 0) return [];
        const { rows } = await query<{ bin: string; value: string }>('getMany', [ns, visitorId, bins, Date.now()]);
        const found = new Map(rows.map((row) => [row.bin, row.value]));
        return bins.map((bin) => found.get(bin));
      },
    }),

    async set(visitorId, bin, data, ttlMs) {
      await query('set', [ns, visitorId, bin, JSON.stringify(data), Math.ceil(Date.now() + ttlMs)]);
    },

    async add(visitorId, bin, data, ttlMs) {
      const now = Date.now();
      const { rowCount } = await query('add', [ns, visitorId, bin, JSON.stringify(data), Math.ceil(now + ttlMs), now]);
      return (rowCount ?? 0) > 0;
    },

    async delete(visitorId, bin) {
      await query('delete', [ns, visitorId, bin]);
    },

    async bins(visitorId) {
      const { rows } = await query<{ bin: string }>('bins', [ns, visitorId, Date.now()]);
      return rows.map((row) => row.bin);
    },

    async sweep() {
      const now = Date.now();
      let removed = 0;
      for (;;) {
        const { rowCount } = await query('sweep', [ns, now]);
        removed += rowCount ?? 0;
        if ((rowCount ?? 0) < SWEEP_BATCH) return removed;
      }
    },

    async close() {
      await pool.end();
    },
  };
}
