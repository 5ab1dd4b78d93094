// A storage of the application's own: one JSON file per visitor and bin, under a folder per visitor.
// Registered as `file:`, so `store: 'file:///var/lib/visitor-state'` uses it.
// Run: PORT=3000 VISITOR_STATE_FILES=./data/files node --import tsx examples/file-storage.ts
import { createHash, randomUUID } from 'node:crypto';
import { type FileHandle, link, mkdir, open, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ConfigError, createVisitorState, registerStorage, type Storage, StorageError } from '../src/index.js';

/** What one file holds: the bin's name (file names may be hashes), its expiry and its data. */
interface Entry {
  readonly bin: string;
  readonly expires: number;
  readonly data: unknown;
}

/** Where one bin lives: its folder, its file, and the lock that `add` and the removal of an expired file take. */
interface Place {
  readonly folder: string;
  readonly file: string;
  readonly lock: string;
}

/** An entry as read, with the inode of the file it came from. */
interface Found {
  readonly entry: Entry;
  readonly ino: bigint;
}

const LONGEST_HEX_NAME = 100; // bytes before hex encoding: 200 characters, under the usual 255-byte file name limit
const LOCK_STALE_MS = 10_000;
const LEFTOVER_MS = 60_000;
const LOCK_WAIT_MS = 2_000;

/**
 * A file or folder name for any string. Hex rather than base64url: on a case-insensitive
 * file system (macOS, Windows) two base64url names that differ only in case are one file.
 * A name too long for the file system becomes `h` + its SHA-256, which hex never starts with.
 */
const nameOf = (text: string): string => {
  const bytes = Buffer.from(text, 'utf8');
  return bytes.length <= LONGEST_HEX_NAME
    ? bytes.toString('hex')
    : `h${createHash('sha256').update(bytes).digest('hex')}`;
};

const codeOf = (error: unknown): string | undefined => (error as NodeJS.ErrnoException | undefined)?.code;
const ignoring =
  (...codes: string[]) =>
  (error: unknown): undefined => {
    if (!codes.includes(codeOf(error) ?? '')) throw error;
    return undefined;
  };
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/**
 * Storage in a folder: `<dir>/<visitor>/<bin>.json`, names hex-encoded. Every write goes to
 * a temporary file in the same folder and is renamed into place, so a reader sees the old
 * file or the new one, never half of one. The expiry is inside the file; an expired file
 * reads as absent and is removed, and `sweep()` removes the ones nobody reads.
 *
 * `add` and `update` are atomic through a lock file per bin, created with `open(…, 'wx')`
 * (which fails when the file exists, on every local file system): only the holder may
 * decide that a bin is absent (or read it to change it) and write it, and the removal of an
 * expired file takes the same lock, so two `add`s never both win and two `update`s never
 * lose each other's change. A lock older than 10 s is taken to be left by a crashed process.
 * `set` takes no lock: the last rename wins. On NFS, `wx` is atomic only from NFSv3 on.
 *
 * @example
 * ```ts
 * registerStorage('file', (url, { namespace }) => {
  let dir: string;
  try {
    dir = fileURLToPath(url);
  } catch (error) {
    throw new ConfigError(`store '${url.protocol}//${url.host}${url.pathname}' is not a local folder; use e.g. 'file:///var/lib/visitor-state'`, {
      cause: error,
    });
  }
  // One folder per namespace, so that two applications can share the root folder.
  return fileStorage(join(dir, namespace));
});
 * const visitors = createVisitorState({ store: 'file:///var/lib/visitor-state' });
 * ```
 */
export function fileStorage(dir: string): Storage {
  const root = resolve(dir);
  const folderOf = (visitorId: string) => join(root, nameOf(visitorId));
  const placeIn = (folder: string, name: string): Place => ({
    folder,
    file: join(folder, `${name}.json`),
    lock: join(folder, `.${name}.lock`),
  });
  const placeOf = (visitorId: string, bin: string) => placeIn(folderOf(visitorId), nameOf(bin));
  /** The bins' names in a folder's listing: temporary files, moved files and locks start with a dot. */
  const binFiles = (names: readonly string[]) =>
    names.filter((name) => name.endsWith('.json') && !name.startsWith('.')).map((name) => name.slice(0, -5));
  const scratch = (folder: string, kind: 'tmp' | 'gone') => join(folder, `.${randomUUID()}.${kind}`);

  /** Runs `make` in `folder`, creating it first, and again if a sweep removed it in between. */
  const inFolder = async <T>(folder: string, make: () => Promise<T>): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      await mkdir(folder, { recursive: true });
      try {
        return await make();
      } catch (error) {
        if (codeOf(error) !== 'ENOENT' || attempt === 2) throw error;
      }
    }
  };

  const read = async (file: string): Promise<Found | undefined> => {
    let handle: FileHandle;
    try {
      handle = await open(file, 'r');
    } catch (error) {
      return ignoring('ENOENT', 'ENOTDIR')(error);
    }
    try {
      const [text, info] = await Promise.all([handle.readFile('utf8'), handle.stat({ bigint: true })]);
      return { entry: JSON.parse(text) as Entry, ino: info.ino };
    } finally {
      await handle.close();
    }
  };

  const write = async (place: Place, entry: Entry): Promise<void> => {
    const temp = scratch(place.folder, 'tmp');
    await inFolder(place.folder, async () => {
      const handle = await open(temp, 'wx');
      try {
        await handle.writeFile(JSON.stringify(entry));
        // Without it, a crash right after the rename can leave an empty file on some file systems.
        await handle.datasync();
      } finally {
        await handle.close();
      }
    });
    try {
      await rename(temp, place.file);
    } catch (error) {
      await unlink(temp).catch(ignoring('ENOENT'));
      throw error;
    }
  };

  /** Takes the bin's lock; resolves to its release, or to `undefined` when another holds it. */
  const tryLock = async (place: Place): Promise<(() => Promise<void>) | undefined> => {
    try {
      const handle = await inFolder(place.folder, () => open(place.lock, 'wx'));
      await handle.close();
      return () => unlink(place.lock).then(undefined, ignoring('ENOENT'));
    } catch (error) {
      if (codeOf(error) !== 'EEXIST') throw error;
    }
    const held = await stat(place.lock).catch(ignoring('ENOENT'));
    if (held && Date.now() - held.mtimeMs > LOCK_STALE_MS) await unlink(place.lock).catch(ignoring('ENOENT'));
    return undefined;
  };

  const waitLock = async (place: Place): Promise<() => Promise<void>> => {
    const started = Date.now();
    for (;;) {
      const release = await tryLock(place);
      if (release) return release;
      if (Date.now() - started > LOCK_WAIT_MS) throw new StorageError(`the lock ${place.lock} stayed taken`);
      await sleep(5 + Math.random() * 20);
    }
  };

  /**
   * Removes the expired file that was read as `found`, unless the bin is locked. A `set` may
   * have renamed a new file into place since it was read: the file is moved aside first and
   * put back when it is not the one that was read.
   */
  const discard = async (place: Place, found: Found): Promise<boolean> => {
    const release = await tryLock(place);
    if (!release) return false;
    try {
      const aside = scratch(place.folder, 'gone');
      try {
        await rename(place.file, aside);
      } catch (error) {
        ignoring('ENOENT')(error);
        return false;
      }
      if ((await stat(aside, { bigint: true })).ino === found.ino) {
        await unlink(aside);
        return true;
      }
      // EEXIST: a still newer set has taken the place meanwhile, and wins.
      await link(aside, place.file).catch(ignoring('EEXIST'));
      await unlink(aside);
      return false;
    } finally {
      await release();
    }
  };

  /** The live entry of a bin, removing its file when it has expired. */
  const live = async (place: Place): Promise<Entry | undefined> => {
    const found = await read(place.file);
    if (!found) return undefined;
    if (found.entry.expires > Date.now()) return found.entry;
    await discard(place, found);
    return undefined;
  };

  const get = async (visitorId: string, bin: string): Promise<unknown> => (await live(placeOf(visitorId, bin)))?.data;

  const entryOf = (bin: string, data: unknown, ttlMs: number): Entry => ({ bin, expires: Date.now() + ttlMs, data });

  const liveEntries = async (visitorId: string): Promise<Entry[]> => {
    const folder = folderOf(visitorId);
    const names = await readdir(folder).catch(ignoring('ENOENT', 'ENOTDIR'));
    if (!names) return [];
    const entries = await Promise.all(binFiles(names).map((name) => live(placeIn(folder, name))));
    return entries.flatMap((entry) => (entry ? [entry] : []));
  };

  return {
    get,

    getMany: (visitorId, bins) => Promise.all(bins.map((bin) => get(visitorId, bin))),

    async set(visitorId, bin, data, ttlMs) {
      await write(placeOf(visitorId, bin), entryOf(bin, data, ttlMs));
    },

    async add(visitorId, bin, data, ttlMs) {
      const place = placeOf(visitorId, bin);
      const release = await waitLock(place);
      try {
        const found = await read(place.file);
        if (found && found.entry.expires > Date.now()) return false;
        await write(place, entryOf(bin, data, ttlMs));
        return true;
      } finally {
        await release();
      }
    },

    async update(visitorId, bin, next, ttlMs) {
      const place = placeOf(visitorId, bin);
      const release = await waitLock(place);
      try {
        const found = await read(place.file);
        const data = next(found && found.entry.expires > Date.now() ? found.entry.data : undefined);
        if (data === undefined) await unlink(place.file).catch(ignoring('ENOENT', 'ENOTDIR'));
        else await write(place, entryOf(bin, data, ttlMs));
        return data;
      } finally {
        await release();
      }
    },

    async delete(visitorId, bin) {
      await unlink(placeOf(visitorId, bin).file).catch(ignoring('ENOENT', 'ENOTDIR'));
    },

    async bins(visitorId) {
      return (await liveEntries(visitorId)).map((entry) => entry.bin);
    },

    async entries(visitorId) {
      return (await liveEntries(visitorId)).map(({ bin, data, expires }) => ({ bin, data, expiresAt: expires }));
    },

    async sweep() {
      let removed = 0;
      const folders = await readdir(root, { withFileTypes: true }).catch(ignoring('ENOENT'));
      for (const folder of folders ?? []) {
        if (!folder.isDirectory()) continue;
        const path = join(root, folder.name);
        const names = (await readdir(path).catch(ignoring('ENOENT'))) ?? [];
        for (const name of binFiles(names)) {
          const place = placeIn(path, name);
          const found = await read(place.file);
          if (found && found.entry.expires <= Date.now() && (await discard(place, found))) removed++;
        }
        // What a crashed writer left behind: a temporary file, a file moved aside, a lock.
        for (const name of names.filter((n) => n.startsWith('.'))) {
          const file = join(path, name);
          const info = await stat(file).catch(ignoring('ENOENT'));
          const age = info ? Date.now() - info.mtimeMs : 0;
          if (age > (name.endsWith('.lock') ? LOCK_STALE_MS : LEFTOVER_MS))
            await unlink(file).catch(ignoring('ENOENT'));
        }
        // Only an empty folder goes; a writer that loses its folder here creates it again.
        await rmdir(path).catch(ignoring('ENOTEMPTY', 'EEXIST', 'ENOENT'));
      }
      return removed;
    },
  };
}

registerStorage('file', (url, { namespace }) => {
  let dir: string;
  try {
    dir = fileURLToPath(url);
  } catch (error) {
    throw new ConfigError(
      `store '${url.protocol}//${url.host}${url.pathname}' is not a local folder; use e.g. 'file:///var/lib/visitor-state'`,
      {
        cause: error,
      },
    );
  }
  // One folder per namespace, so that two applications can share the root folder.
  return fileStorage(join(dir, namespace));
});

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const folder = resolve(process.env.VISITOR_STATE_FILES ?? './data/files');
  // An update takes the bin's lock and waits for the disk (datasync): give it more than the 250 ms default.
  const visitors = createVisitorState({ store: pathToFileURL(folder).href, sweepInterval: '10m', timeout: '2s' });
  await visitors.ready();

  const server = createServer(async (req, res) => {
    const visitor = await visitors.resolve(req, res);
    const views = await visitor.cache.update('example:views', (n?: number) => (n ?? 0) + 1);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ views }));
  });

  const port = Number(process.env.PORT ?? 3000);
  server.listen(port, () => console.log(`visitor-state file storage example on http://localhost:${port}/ (${folder})`));

  const stop = () => {
    server.close();
    server.closeAllConnections();
    void visitors.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
