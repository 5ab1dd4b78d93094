import { ConfigError } from '../errors.js';
import { describeStore, loadPeer } from './load-peer.js';

/** A prepared statement, as `node:sqlite` and `better-sqlite3` both have it. */
export interface SqliteStatement {
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): { changes: number | bigint };
}

/** One open connection, the part both drivers share. */
export interface SqliteDatabase {
  exec(sql: string): void;
  prepare(sql: string): SqliteStatement;
  close(): void;
}

/** A SQLite driver: its name, for messages, and how it opens a file. */
export interface SqliteDriver {
  readonly name: 'node:sqlite' | 'better-sqlite3';
  open(file: string): SqliteDatabase;
}

interface NodeSqlite {
  DatabaseSync: new (file: string) => SqliteDatabase;
}

type BetterSqlite = new (file: string) => SqliteDatabase;

const NODE_SQLITE = 'node:sqlite';

/**
 * `node:sqlite` where the runtime has it without a flag (Node 22.13 and later, Deno), found
 * through `process.getBuiltinModule` (which answers `undefined` for a module the runtime lacks
 * or keeps behind a flag), else through an import where a runtime has no `getBuiltinModule`.
 * The specifier is a variable so that bundlers for edge runtimes do not try to resolve it.
 */
async function builtInSqlite(): Promise<SqliteDriver | undefined> {
  const getBuiltin = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  let sqlite: NodeSqlite | undefined;
  if (getBuiltin) sqlite = getBuiltin(NODE_SQLITE) as NodeSqlite | undefined;
  else {
    sqlite = await import(NODE_SQLITE).catch((error: unknown) => {
      const code = (error as { code?: unknown }).code;
      if (code === 'ERR_UNKNOWN_BUILTIN_MODULE' || code === 'ERR_MODULE_NOT_FOUND') return undefined;
      throw error;
    });
  }
  if (typeof sqlite?.DatabaseSync !== 'function') return undefined;
  const { DatabaseSync } = sqlite;
  return { name: 'node:sqlite', open: (file) => new DatabaseSync(file) };
}

/**
 * The SQLite driver to use: the runtime's own `node:sqlite` when it has one, else the
 * optional peer `better-sqlite3` 12 (a native addon, so it is loaded only when needed: a
 * copy built for one Node version's ABI would fail to load on another). Neither present is a
 * {@link ConfigError} that says what to install.
 *
 * @example
 * ```ts
 * const driver = await sqliteDriver(new URL('sqlite://./data/state.sqlite'));
 * const db = driver.open('./data/state.sqlite');
 * ```
 */
export async function sqliteDriver(store: URL | string): Promise<SqliteDriver> {
  const builtIn = await builtInSqlite();
  if (builtIn) return builtIn;
  const label = describeStore(store);
  // A specifier the bundlers of edge runtimes do not try to resolve: those runtimes never get here.
  const peer = 'better-sqlite3';
  let loaded: { default: BetterSqlite };
  try {
    loaded = await loadPeer(peer, store, () => import(peer));
  } catch (error) {
    if (error instanceof ConfigError)
      throw new ConfigError(
        `store '${label}' needs node:sqlite (Node 22.13 or later) or the package better-sqlite3: npm install better-sqlite3@12`,
        { cause: error.cause },
      );
    // A native addon built for another Node version's ABI, or for another platform.
    throw new ConfigError(
      `store '${label}': better-sqlite3 is installed but cannot be loaded; run npm rebuild better-sqlite3`,
      {
        cause: error,
      },
    );
  }
  const Database = loaded.default;
  return { name: 'better-sqlite3', open: (file) => new Database(file) };
}
