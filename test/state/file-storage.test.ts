import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { fileStorage } from '../../examples/file-storage.js';
import { randomId } from '../../src/crypto.js';
import { ConfigError, createVisitorState } from '../../src/index.js';
import { storageContract } from '../../src/testing.js';
import { createCookieJar } from '../helpers/cookie-jar.js';
import { send } from '../helpers/http.js';
import { freePort } from '../helpers/services.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MINUTE = 60_000;
const dir = await mkdtemp(join(tmpdir(), 'visitor-state-files-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Every file under `folder`, recursively, as paths relative to it. */
const filesUnder = async (folder: string): Promise<string[]> =>
  (await readdir(folder, { recursive: true, withFileTypes: true }))
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(folder.length + 1));

storageContract(
  'file (examples/file-storage.ts)',
  async (namespace) => fileStorage(join(dir, 'contract', namespace ?? 'vs')),
  { capabilities: ['getMany', 'add', 'update', 'bins', 'entries', 'sweep'] },
);

describe('file storage', () => {
  it('never lets a reader see a half-written file while writers race on one bin', async () => {
    const storage = fileStorage(join(dir, 'race'));
    const visitor = randomId();
    // Large enough that one write takes several system calls.
    const values = Array.from({ length: 24 }, (_, i) => ({ writer: i, text: String(i % 10).repeat(400_000) }));
    const reads: unknown[] = [];
    let writing = true;
    const reader = (async () => {
      while (writing) reads.push(await storage.get(visitor, 'big').catch((error: unknown) => error));
    })();
    await Promise.all(values.map((value) => storage.set(visitor, 'big', value, MINUTE)));
    writing = false;
    await reader;

    expect(reads.filter((read) => read instanceof Error)).toEqual([]);
    const seen = reads.filter((read) => read !== undefined) as { writer: number; text: string }[];
    expect(seen.length).toBeGreaterThan(0);
    for (const read of seen) expect(read.text).toBe(values[read.writer]?.text);
    const last = (await storage.get(visitor, 'big')) as { writer: number; text: string };
    expect(last.text).toBe(values[last.writer]?.text);
    // Each file on disk parses, and no temporary file is left over.
    const files = await filesUnder(join(dir, 'race'));
    expect(files).toHaveLength(1);
    for (const file of files) JSON.parse(await readFile(join(dir, 'race', file), 'utf8'));
  });

  it('keeps a bin whose name is too long to be a file name as it is, and lists it', async () => {
    const storage = fileStorage(join(dir, 'long'));
    const visitor = randomId();
    const name = `mymod:${'x'.repeat(194)}`;
    await storage.set(visitor, name, 'long', MINUTE);
    await storage.set(visitor, 'Geo', 'upper', MINUTE);
    await storage.set(visitor, 'geo', 'lower', MINUTE);
    expect(await storage.get(visitor, name)).toBe('long');
    expect(await storage.getMany?.(visitor, ['Geo', 'geo'])).toEqual(['upper', 'lower']);
    expect((await storage.bins?.(visitor))?.sort()).toEqual(['Geo', 'geo', name].sort());
  });

  it('removes an expired file when it is read, and empty visitor folders when it sweeps', async () => {
    const folder = join(dir, 'expiry');
    const storage = fileStorage(folder);
    const visitor = randomId();
    await storage.set(visitor, 'short', 1, 30);
    await storage.set(randomId(), 'short', 2, 30);
    await new Promise((done) => setTimeout(done, 80));
    expect(await storage.get(visitor, 'short')).toBeUndefined();
    expect(await filesUnder(folder)).toHaveLength(1);
    expect(await storage.sweep?.()).toBe(1);
    expect(await readdir(folder)).toEqual([]);
    await storage.set(visitor, 'again', 3, MINUTE);
    expect(await storage.get(visitor, 'again')).toBe(3);
  });

  it('serves as store: file:///… once the example is imported, one folder per namespace', async () => {
    const folder = join(dir, 'registered');
    const visitors = createVisitorState({
      secret: 'file-storage-test-secret-0123456789',
      store: pathToFileURL(folder).href,
    });
    await visitors.ready();
    const visitor = await visitors.resolve({ headers: {} });
    await visitor.cache.set('mymod:geo', { city: 'Lyon' });
    expect(await visitor.cache.get('mymod:geo')).toEqual({ city: 'Lyon' });
    expect(await readdir(folder)).toEqual(['vs']);
    await visitors.close();
  });

  it('refuses a file: URL that names another host with a ConfigError', async () => {
    const visitors = createVisitorState({
      secret: 'file-storage-test-secret-0123456789',
      store: 'file://server/share',
    });
    await expect(visitors.ready()).rejects.toBeInstanceOf(ConfigError);
  });
});

describe('examples/file-storage.ts', () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0))
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  it('counts page views per visitor in files over HTTP and stops cleanly on SIGINT', async () => {
    const port = await freePort();
    const folder = join(dir, 'example');
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/file-storage.ts'], {
      cwd: ROOT,
      env: {
        ...process.env,
        PORT: String(port),
        VISITOR_STATE_SECRET: 'file-storage-example-secret-000000001',
        VISITOR_STATE_FILES: folder,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the example did not listen within 15 s:\n${output}`)), 15_000);
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8');
        if (output.includes(`:${port}/`)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stderr?.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8');
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`the example exited with ${code} before listening:\n${output}`));
      });
    });

    const url = `http://127.0.0.1:${port}/`;
    const jar = createCookieJar();
    expect((await jar.request(url)).json()).toEqual({ views: 1 });
    expect((await jar.request(url)).json()).toEqual({ views: 2 });
    expect((await jar.request(url)).json()).toEqual({ views: 3 });
    expect((await send(url)).json()).toEqual({ views: 1 });
    // Two visitors, one bin file each, in the default namespace's folder.
    expect(await filesUnder(join(folder, 'vs'))).toHaveLength(2);

    child.kill('SIGINT');
    expect(await exited).toBe(0);
  });
});
