import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const root = resolve(import.meta.dirname, '../..');

const sources = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );

let built: Promise<string> | undefined;

/**
 * The command as users get it: `dist/cli/main.js` built by tsc from this tree. CI builds
 * `dist/` before the tests and that build is used while it is newer than every source; else
 * the tree is built once into node_modules/.cache (where the optional drivers resolve), shared
 * by the test files that run at once.
 */
export function builtBin(): Promise<string> {
  built ??= build();
  return built;
}

async function build(): Promise<string> {
  const files = sources(join(root, 'src'));
  const newest = Math.max(...files.map((file) => statSync(file).mtimeMs));
  const dist = join(root, 'dist/cli/main.js');
  if (existsSync(dist) && statSync(dist).mtimeMs >= newest) return dist;
  const hash = createHash('sha256');
  for (const file of files) hash.update(`${file}:${statSync(file).mtimeMs}:${statSync(file).size}\n`);
  const cache = join(root, 'node_modules/.cache/visitor-state-cli');
  const out = join(cache, hash.digest('hex').slice(0, 16));
  const bin = join(out, 'cli/main.js');
  const lock = `${out}.lock`;
  mkdirSync(cache, { recursive: true });
  for (let waited = 0; !existsSync(bin); waited += 250) {
    try {
      mkdirSync(lock);
    } catch {
      // Another test file is building the same tree: wait for it (tsc takes up to a minute on a busy machine).
      if (waited > 180_000) throw new Error(`${lock} is held for 3 minutes: remove it`);
      await new Promise((r) => setTimeout(r, 250));
      continue;
    }
    try {
      const tmp = `${out}.${process.pid}`;
      await promisify(execFile)(
        process.execPath,
        [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', tmp],
        { cwd: root },
      );
      renameSync(tmp, out);
      // Builds of older trees are of no more use.
      for (const old of readdirSync(cache))
        if (join(cache, old) !== out && !old.endsWith('.lock'))
          rmSync(join(cache, old), { recursive: true, force: true });
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }
  return bin;
}

export interface CliResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `node <bin> ...args` with the environment given (merged over a clean copy of this one). */
export async function cli(args: readonly string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  const bin = await builtBin();
  const merged: Record<string, string | undefined> = { ...process.env, VISITOR_STATE_SECRET: undefined, ...env };
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: root,
      env: Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.once('error', reject);
    child.once('close', (status) => resolvePromise({ status, stdout, stderr }));
  });
}
