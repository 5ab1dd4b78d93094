import type { Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError, StorageError } from '../errors.js';
import { describeStore } from './load-peer.js';
import { type SqliteDatabase, type SqliteDriver, type SqliteStatement, sqliteDriver } from './sqlite-driver.js';
import type { Storage, StorageOptions, StoredBin } from './storage.js';

const SWEEP_BATCH = 1_000;
const DEFAULT_TIMEOUT_MS = 250;
/** Opening waits longer for a lock than a request does: switching a new file to WAL needs one. */
const OPEN_BUSY_MS = 5_000;
/** How often a read checks the file's identity against the open handle; a write always does (see `current`). */
const IDENTITY_CHECK_MS = 1_000;
const DEFAULT_PAGE = 1_000;
const MAX_PAGE = 10_000;

const SCHEMA = [
  // The busy timeout comes first: switching a new file to WAL takes a lock another process may hold.
  `PRAGMA busy_timeout = ${OPEN_BUSY_MS}`,
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
  entries: 'SELECT bin, value, expires FROM visitor_state WHERE ns = ? AND visitor = ? AND expires > ?',
  // The primary key's order: each page is a range scan that starts where the last one ended.
  visitors: `SELECT DISTINCT visitor FROM visitor_state WHERE ns = ? AND visitor > ? AND expires > ?
    ORDER BY visitor LIMIT ?`,
  // WITHOUT ROWID tables have no rowid, and DELETE … LIMIT is a compile-time option: select a batch by key.
  sweep: `DELETE FROM visitor_state WHERE (ns, visitor, bin) IN
    (SELECT ns, visitor, bin FROM visitor_state WHERE ns = ? AND expires <= ? LIMIT ${SWEEP_BATCH})`,
  // IMMEDIATE takes the write lock at once, so two processes' read-modify-writes queue up
  // instead of both reading the old value.
  begin: 'BEGIN IMMEDIATE',
  commit: 'COMMIT',
  rollback: 'ROLLBACK',
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

interface Connection {
  readonly db: SqliteDatabase;
  readonly statements: Record<keyof typeof SQL, SqliteStatement>;
  /** The file the handle has open; `undefined` for `:memory:`. */
  readonly identity: Pick<Stats, 'dev' | 'ino'> | undefined;
}

type Row = Record<string, unknown>;

/**
 * Storage in a SQLite file: one row per bin, expiry in an indexed column, WAL so several
 * processes can share the file. The driver is the runtime's `node:sqlite` (Node 22.13 and
 * later, Deno), else `better-sqlite3` 12, an optional peer to install on Node 20. Expired rows
 * are hidden at once and removed by `sweep()`, which deletes this namespace's expired rows
 * in batches. Every ability of the storage contract but `peek` is here: `update` is a
 * `BEGIN IMMEDIATE` transaction, atomic across the processes that share the file.
 *
 * Both drivers are synchronous: a statement runs to its end on the main thread, so no
 * timeout can cut one short (they take microseconds on a local disk). What `timeoutMs`
 * does bound is the wait for a lock another process holds (SQLite's busy timeout): past
 * it the call fails with `SQLITE_BUSY` rather than stalling the event loop. Opening waits
 * up to 5 s for that lock, once, at start.
 *
 * A file that cannot be opened or created is a {@link ConfigError} at start. A file deleted
 * or replaced while open is found before the next write, and by reads within a second (its
 * device and inode against the open handle's), reported through `report`, and opened again
 * at its path, so that no write goes into a file nobody can see.
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
  // Loaded here, not imported by the module: a bundle for a runtime without a file system
  // (Cloudflare Workers) carries this module, and a static import of node:fs stops it loading.
  const { mkdirSync, promises, statSync } = await import('node:fs');
  const driver = await sqliteDriver(url);
  const file = fileOf(url);
  const store = describeStore(url);
  const now = options.now ?? Date.now;
  const busyMs = Math.max(1, Math.ceil(options.timeoutMs ?? DEFAULT_TIMEOUT_MS));

  if (file !== ':memory:') {
    try {
      await promises.mkdir(dirname(file), { recursive: true });
    } catch (error) {
      throw new ConfigError(`store '${store}': cannot create the folder of ${file}; check the path`, { cause: error });
    }
  }

  let connection: Connection | undefined = connect(driver, file, store, busyMs, statSync);
  let checkedAt = Date.now();
  let closed = false;

  /**
   * The open connection, after making sure that the path still names the file it has open:
   * before every write, so that a write resolved as stored is in the file at the path (a
   * `stat` takes about 2 µs, a write about 50 µs), and at most once a second before a read,
   * which takes about 7 µs and loses nothing by reading the old file a moment longer. Only a
   * file removed in the microseconds between the `stat` and the statement still takes a
   * write with it.
   */
  const current = (writing: boolean): Connection => {
    if (closed) throw new StorageError(`store '${store}' is closed`);
    if (!connection) {
      // The last reopen failed (the folder is gone, say): try again, and fail this call if it still cannot.
      mkdirSync(dirname(file), { recursive: true });
      connection = connect(driver, file, store, busyMs, statSync);
      checkedAt = Date.now();
      return connection;
    }
    if (!connection.identity || (!writing && Date.now() - checkedAt < IDENTITY_CHECK_MS)) return connection;
    checkedAt = Date.now();
    const found = statSync(file, { throwIfNoEntry: false });
    if (found && found.ino === connection.identity.ino && found.dev === connection.identity.dev) return connection;
    options.report(
      new StorageError(
        `store '${store}': ${file} was ${found ? 'replaced' : 'deleted'} while open; opening the file now at that path`,
      ),
    );
    const old = connection;
    connection = undefined;
    // The -wal file at the path still holds this handle's last writes, and SQLite would replay
    // them onto whatever file is now at the path: move them into the old file and empty it first.
    try {
      old.db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    } catch (error) {
      options.report(
        new StorageError(`store '${store}': cannot empty the write-ahead log of the old file`, { cause: error }),
      );
    }
    old.db.close();
    return current(writing);
  };

  const ns = options.namespace;
  const read = (name: keyof typeof SQL) => current(false).statements[name];
  const write = (name: keyof typeof SQL) => current(true).statements[name];
  const expiry = (ttlMs: number) => Math.ceil(now() + ttlMs);

  const readRow = (visitorId: string, bin: string) => read('get').get(ns, visitorId, bin, now()) as Row | undefined;

  return {
    async get(visitorId, bin) {
      const row = readRow(visitorId, bin);
      return row === undefined ? undefined : JSON.parse(row.value as string);
    },

    async getMany(visitorId, bins) {
      if (bins.length === 0) return [];
      const rows = read('getMany').all(ns, visitorId, JSON.stringify(bins), now()) as Row[];
      const found = new Map(rows.map((row) => [row.bin as string, row.value as string]));
      return bins.map((bin) => {
        const value = found.get(bin);
        return value === undefined ? undefined : JSON.parse(value);
      });
    },

    async set(visitorId, bin, data, ttlMs) {
      write('set').run(ns, visitorId, bin, JSON.stringify(data), expiry(ttlMs));
    },

    async add(visitorId, bin, data, ttlMs) {
      const at = now();
      const { changes } = write('add').run(ns, visitorId, bin, JSON.stringify(data), Math.ceil(at + ttlMs), at);
      return Number(changes) > 0;
    },

    async update(visitorId, bin, next, ttlMs) {
      const { statements } = current(true);
      statements.begin.run();
      try {
        const row = statements.get.get(ns, visitorId, bin, now()) as Row | undefined;
        const result = next(row === undefined ? undefined : JSON.parse(row.value as string));
        if (result === undefined) statements.delete.run(ns, visitorId, bin);
        else statements.set.run(ns, visitorId, bin, JSON.stringify(result), expiry(ttlMs));
        statements.commit.run();
        return result;
      } catch (error) {
        statements.rollback.run();
        throw error;
      }
    },

    async delete(visitorId, bin) {
      write('delete').run(ns, visitorId, bin);
    },

    async bins(visitorId) {
      return (read('bins').all(ns, visitorId, now()) as Row[]).map((row) => row.bin as string);
    },

    async entries(visitorId) {
      return (read('entries').all(ns, visitorId, now()) as Row[]).map(
        (row): StoredBin => ({
          bin: row.bin as string,
          data: JSON.parse(row.value as string),
          expiresAt: Number(row.expires),
        }),
      );
    },

    async visitors(page = {}) {
      const limit = Math.min(MAX_PAGE, Math.max(1, Math.floor(page.limit ?? DEFAULT_PAGE)));
      const rows = read('visitors').all(ns, page.next ?? '', now(), limit) as Row[];
      const ids = rows.map((row) => row.visitor as string);
      const last = ids[ids.length - 1];
      return ids.length === limit && last !== undefined ? { ids, next: last } : { ids };
    },

    async sweep() {
      const at = now();
      let removed = 0;
      for (;;) {
        const changes = Number(write('sweep').run(ns, at).changes);
        removed += changes;
        if (changes < SWEEP_BATCH) return removed;
        // Let other requests in between batches: each batch holds the event loop while it runs.
        await new Promise((done) => setImmediate(done));
      }
    },

    async close() {
      closed = true;
      connection?.db.close();
      connection = undefined;
    },
  };
}

/** Whether a SQLite error is SQLITE_BUSY ("database is locked"), from either driver. */
function isBusy(error: unknown): boolean {
  const { code, errcode } = (error ?? {}) as { code?: unknown; errcode?: unknown };
  // node:sqlite: code ERR_SQLITE_ERROR and the (extended) result code; better-sqlite3: code SQLITE_BUSY…
  return (
    (typeof errcode === 'number' && (errcode & 0xff) === 5) ||
    (typeof code === 'string' && code.startsWith('SQLITE_BUSY'))
  );
}

/**
 * Runs the schema, again while another process setting up the same file holds it: SQLite
 * answers a lock that two connections both want to upgrade with SQLITE_BUSY at once, not
 * through busy_timeout (it breaks the deadlock), so two servers started together on a new
 * file would otherwise see one of them fail. Gives up after OPEN_BUSY_MS.
 */
function setUp(db: SqliteDatabase): void {
  const giveUpAt = Date.now() + OPEN_BUSY_MS;
  for (;;) {
    try {
      for (const sql of SCHEMA) db.exec(sql);
      return;
    } catch (error) {
      if (!isBusy(error) || Date.now() >= giveUpAt) throw error;
      // Opening is synchronous with these drivers: a short blocking pause, at start only.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5 + Math.random() * 20);
    }
  }
}

/** Opens the file, sets it up and prepares every statement; a {@link ConfigError} when it cannot. */
function connect(
  driver: SqliteDriver,
  file: string,
  store: string,
  busyMs: number,
  statSync: typeof import('node:fs').statSync,
): Connection {
  let db: SqliteDatabase;
  try {
    db = driver.open(file);
  } catch (error) {
    throw new ConfigError(`store '${store}': cannot open ${file}; check the path and its permissions`, {
      cause: error,
    });
  }
  try {
    setUp(db);
    // From here on a request waits for another process's lock no longer than its timeout.
    db.exec(`PRAGMA busy_timeout = ${busyMs}`);
    const statements = Object.fromEntries(
      Object.entries(SQL).map(([name, sql]) => [name, db.prepare(sql)]),
    ) as Connection['statements'];
    const identity = file === ':memory:' ? undefined : statSync(file);
    return { db, statements, identity };
  } catch (error) {
    db.close();
    throw new ConfigError(`store '${store}': cannot set up ${file} with ${driver.name} (is it a SQLite database?)`, {
      cause: error,
    });
  }
}
