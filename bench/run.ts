import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LIBRARY_ENV } from './library.js';

// Runs every bench file in turn, each in a process of its own, or only those named:
//   npm run bench               npm run bench -- identity storage
// The library is compiled first, so the figures are of the code users run.

const benchDir = dirname(fileURLToPath(import.meta.url));
const root = dirname(benchDir);
const available = readdirSync(benchDir)
  .filter((file) => file.endsWith('.bench.ts'))
  .map((file) => file.slice(0, -'.bench.ts'.length))
  .sort();

const asked = process.argv.slice(2).map((name) => name.replace(/(\.bench)?(\.ts)?$/, ''));
const unknown = asked.filter((name) => !available.includes(name));
if (unknown.length > 0) {
  console.error(`no bench named ${unknown.join(', ')}; there are: ${available.join(', ')}`);
  process.exit(2);
}
const chosen = asked.length > 0 ? asked : available;

function build(): string | undefined {
  const outDir = join(root, 'node_modules', '.cache', 'visitor-state-bench', 'lib');
  rmSync(outDir, { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const args = ['-p', 'tsconfig.build.json', '--outDir', outDir, '--declaration', 'false', '--sourceMap', 'false'];
  const started = Date.now();
  const result = spawnSync(process.execPath, [tsc, ...args], { cwd: root, encoding: 'utf8' });
  if (!existsSync(join(outDir, 'index.js'))) {
    console.log(`could not compile src/ (${result.stdout}${result.stderr}); measuring src/ through tsx instead`);
    return undefined;
  }
  // tsc emits despite type errors: the build is measurable, but say so.
  if (result.status !== 0) console.log(`note: src/ has type errors; measuring what tsc emitted anyway`);
  console.log(`compiled src/ in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return outDir;
}

const lib = build();
const env = lib === undefined ? process.env : { ...process.env, [LIBRARY_ENV]: lib };
const failed: string[] = [];
for (const name of chosen) {
  console.log(`\n######## bench/${name}.bench.ts`);
  const started = Date.now();
  // process.execArgv carries tsx's loader, so the child runs TypeScript as this process does.
  const result = spawnSync(process.execPath, [...process.execArgv, join(benchDir, `${name}.bench.ts`)], {
    stdio: 'inherit',
    env,
  });
  console.log(`(${name}: ${((Date.now() - started) / 1000).toFixed(0)} s)`);
  if (result.status !== 0) failed.push(name);
}
if (failed.length > 0) {
  console.error(`\nfailed: ${failed.join(', ')}`);
  process.exit(1);
}
