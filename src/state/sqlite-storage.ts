import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Database, Statement } from 'sqlite3';
import { ConfigError } from '../errors.js';
import { describeStore, loadPeer } from './load-peer.js';
import { readsFromJsonText, type Storage, type StorageOptions } from './storage.js';

const SWEEP_BATCH = 1_000;

const SCHEMA = [
  // The busy timeout comes first: switching a new file to WAL takes a lock another process may hold.
  'PRAGMA busy_timeout = 5000',
  'PRAGMA journal_mode = WAL',
  'PRAGMA synchronous = NORMAL',
  `CREATE TABLE IF NOT EXISTS visitor_state (
    ns TEXT NOT NULL,
    visitor TEXT NOT NULL,
    bin TEXT NOT NULL,
    value TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (ns, visitor, bin)
  ) WITHOUT ROWID`,
  'CREATE INDEX IF NOT EXISTS visitor_state_ns_expires ON visitor_state (ns, expires)',
];

const SQL = {
  get: 'SELECT value FROM visitor_state WHERE ns = ? AND visitor = ? AND bin = ? AND expires > ?',
  // One statement serves any number of bins: the list travels as a JSON array.
  getMany:
    'SELECT bin, value FROM visitor_state WHERE ns = ? AND visitor = ? AND bin IN (SELECT value FROM json_each(?)) AND expires > ?',
  set: `INSERT INTO visitor_state (ns, visitor, bin, value, expires) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (ns, visitor, bin) DO UPDATE SET value = excluded.value, expires = excluded.expires`,
  // Takes the row over only when it has expired: one statement, so two writers cannot both win.
  add: `INSERT INTO visitor_state (ns, visitor, bin, value, expires) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (ns, visitor, bin) DO UPDATE SET value = excluded.value, expires = excluded.expires
    WHERE visitor_state.expires <= ?`,
  delete: 'DELETE FROM visitor_state WHERE ns = ? AND visitor = ? AND bin = ?',
  bins: 'SELECT bin FROM visitor_state WHERE ns = ? AND visitor = ? AND expires > ?',
  // WITHOUT ROWID tables have no rowid, and DELETE … LIMIT is a compile-time option: select a batch by key.
  sweep: `DELETE FROM visitor_state WHERE (ns, visitor, bin) IN
    (SELECT ns, visitor, bin FROM visitor_state WHERE ns = ? AND expires <= ? LIMIT ${SWEEP_BATCH})`,
} as const;

/** The SQL of the sweep's DELETE, for checking its query plan. */
export const SQLITE_SWEEP_SQL = SQL.sweep;

/**
 * The file a `sqlite:` URL names: `sqlite://./data/state.sqlite` (relative to the working
 * directory), `sqlite:///var/lib/app/state.sqlite` (absolute) or `sqlite::memory:`.
 */
function fileOf(url: URL): string {
  const path = decodeURIComponent(url.pathname);
  if (url.host === '' && path === ':memory:') return path;
  if (url.host !== '') return resolve(decodeURIComponent(url.host) + path);
  return resolve(path);
}

type Row = Record<string, string>;

/**
 * Storage in a SQLite file (`sqlite3` must be installed): one row per bin, expiry in an
 * indexed column, WAL so several processes can share the file. Expired rows are hidden at
 * once and removed by `sweep()`, which deletes this namespace's expired rows in batches.
 *
 * A file that cannot be opened or created is a {@link ConfigError} at start.
 *
 * @example
 * ```ts
 * const storage = await sqliteStorage(new URL('sqlite://./data/visitor-state.sqlite'), {
 *   namespace: 'vs',
 *   maxEntries: 100_000,
 *   report: console.error,
 * });
 * ```
 */
export async function sqliteStorage(url: URL, options: StorageOptions): Promise<Storage> {
  const { default: sqlite3 } = await loadPeer<{ default: typeof import('sqlite3') }>('sqlite3', url);
  const file = fileOf(url);
  const store = describeStore(url);

  if (file !== ':memory:') {
    try {
      await mkdir(dirname(file), { recursive: true });
    } catch (error) {
      throw new ConfigError(`store '${store}': cannot create the folder of ${file}; check the path`, { cause: error });
    }
  }

  const db = await new Promise<Database>((done, fail) => {
    const opened: Database = new sqlite3.Database(file, (error) => (error ? fail(error) : done(opened)));
  }).catch((error: unknown) => {
    throw new ConfigError(`store '${store}': cannot open ${file}; check the path and its permissions`, {
      cause: error,
    });
  });
  // Errors of calls made without a callback would otherwise be thrown as 'error' events.
  db.on('error', (error) => options.report(error));

  const exec = (sql: string) =>
    new Promise<void>((done, fail) => db.exec(sql, (error) => (error ? fail(error) : done())));
  const prepare = (sql: string) =>
    new Promise<Statement>((done, fail) => {
      const statement = db.prepare(sql, (error) => (error ? fail(error) : done(statement)));
    });

  let statements: Record<keyof typeof SQL, Statement>;
  try {
    for (const sql of SCHEMA) await exec(sql);
    const entries = await Promise.all(
      Object.entries(SQL).map(async ([name, sql]) => [name, await prepare(sql)] as const),
    );
    statements = Object.fromEntries(entries) as typeof statements;
  } catch (error) {
    await new Promise<void>((done) => db.close(() => done()));
    throw new ConfigError(`store '${store}': cannot set up ${file} (is it a SQLite database?)`, { cause: error });
  }

  // `all` steps to the end: a statement left on a row by `get` would hold its read transaction open.
  const all = (statement: Statement, params: unknown[]) =>
    new Promise<Row[]>((done, fail) => statement.all<Row>(params, (error, rows) => (error ? fail(error) : done(rows))));
  const run = (statement: Statement, params: unknown[]) =>
    new Promise<number>((done, fail) =>
      statement.run(params, function (this: { changes: number }, error: Error | null) {
        if (error) fail(error);
        else done(this.changes);
      }),
    );

  const ns = options.namespace;

  return {
    ...readsFromJsonText({
      async get(visitorId, bin) {
        const [row] = await all(statements.get, [ns, visitorId, bin, Date.now()]);
        return row?.value as string | undefined;
      },
      async getMany(visitorId, bins) {
        if (bins.length === 0) return [];
        const rows = await all(statements.getMany, [ns, visitorId, JSON.stringify(bins), Date.now()]);
        const found = new Map(rows.map((row) => [row.bin as string, row.value as string]));
        return bins.map((bin) => found.get(bin));
      },
    }),

    async set(visitorId, bin, data, ttlMs) {
      await run(statements.set, [ns, visitorId, bin, JSON.stringify(data), Math.ceil(Date.now() + ttlMs)]);
    },

    async add(visitorId, bin, data, ttlMs) {
      const now = Date.now();
      return (await run(statements.add, [ns, visitorId, bin, JSON.stringify(data), Math.ceil(now + ttlMs), now])) > 0;
    },

    async delete(visitorId, bin) {
      await run(statements.delete, [ns, visitorId, bin]);
    },

    async bins(visitorId) {
      const rows = await all(statements.bins, [ns, visitorId, Date.now()]);
      return rows.map((row) => row.bin as string);
    },

    async sweep() {
      const now = Date.now();
      let removed = 0;
      for (;;) {
        const changes = await run(statements.sweep, [ns, now]);
        removed += changes;
        if (changes < SWEEP_BATCH) return removed;
        // Let writers of other requests in between batches.
        await new Promise((done) => setImmediate(done));
      }
    },

    async close() {
      await Promise.all(
        Object.values(statements).map((statement) => new Promise<void>((done) => statement.finalize(() => done()))),
      );
      await new Promise<void>((done, fail) => db.close((error) => (error ? fail(error) : done())));
    },
  };
}
