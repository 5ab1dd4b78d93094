import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { createCookieJar } from './helpers/cookie-jar.js';
import { canConnect, freePort } from './helpers/services.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// Under the repository, so the blocks' bare imports (express, fastify, hono) resolve from its node_modules.
const TMP_PARENT = join(ROOT, '.readme-tmp');
const SECRET = 'readme-quick-start-secret-long-enough-01';
const MAX_BLOCK_LINES = 10;

/** The `###` subsections of "## Quick start", by the heading's leading words. */
const FRAMEWORKS = ['node:http', 'Express', 'Fastify', 'Hono', 'Fetch API'] as const;

/** The package entries a quick start may import, as files of this repository. */
const ENTRIES: Record<string, string> = {
  'visitor-state': 'src/index.ts',
  'visitor-state/node': 'src/adapters/node-http.ts',
  'visitor-state/express': 'src/adapters/express.ts',
  'visitor-state/fastify': 'src/adapters/fastify.ts',
  'visitor-state/fetch': 'src/adapters/fetch.ts',
  'visitor-state/hono': 'src/adapters/hono.ts',
};

/** The ```ts blocks of each `###` subsection of "## Quick start", keyed by the heading text. */
function quickStartBlocks(markdown: string): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  let inQuickStart = false;
  let heading: string | undefined;
  let block: string[] | undefined;
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) {
      if (block) {
        if (heading) sections.get(heading)?.push(block.join('\n'));
        block = undefined;
      } else if (inQuickStart && heading && line.trim() === '```ts') block = [];
      fenced = !fenced;
      continue;
    }
    if (block) block.push(line);
    if (fenced) continue;
    if (line.startsWith('## ')) {
      inQuickStart = line.trim() === '## Quick start';
      heading = undefined;
    } else if (inQuickStart && line.startsWith('### ')) {
      heading = line.slice(4).trim();
      sections.set(heading, []);
    }
  }
  return sections;
}

/** A block as it must be to run here: the package imports point at src/, and port 3000 becomes `port`. */
function runnable(block: string, port: number): string {
  const imported = block.replace(/(['"])(visitor-state(?:\/[\w-]+)?)\1/g, (_, quote: string, name: string) => {
    const file = ENTRIES[name];
    if (!file) throw new Error(`the README imports '${name}', which the package does not export`);
    return `${quote}${pathToFileURL(join(ROOT, file)).href}${quote}`;
  });
  if (!/\b3000\b/.test(imported)) throw new Error('the block does not listen on port 3000');
  return imported.replace(/\b3000\b/g, String(port));
}

interface Running {
  readonly url: string;
  stop(): Promise<void>;
}

const children: ChildProcess[] = [];
let tmp = '';

beforeAll(async () => {
  await mkdir(TMP_PARENT, { recursive: true });
  tmp = await mkdtemp(join(TMP_PARENT, 'run-'));
});

afterEach(async () => {
  // A test that failed before stopping its program must not leave it running.
  await Promise.all(children.splice(0).map(stop));
});

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
  try {
    await rmdir(TMP_PARENT);
  } catch (error) {
    // Another run still has its folder in there; it removes the parent when it is done.
    if ((error as NodeJS.ErrnoException).code !== 'ENOTEMPTY') throw error;
  }
});

/** SIGTERM, then SIGKILL if it is still there a second later; resolves once the process has exited. */
function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 1_000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * Writes `source` to a file and runs it with `node --import tsx` until its port answers; should
 * the test fail later, what the program printed is shown with the failure.
 */
async function run(name: string, source: string, port: number): Promise<Running> {
  const file = join(tmp, `${name.replace(/\W+/g, '-').toLowerCase()}.ts`);
  await writeFile(file, source);
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
    cwd: ROOT,
    env: { ...process.env, VISITOR_STATE_SECRET: SECRET },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  const collect = (chunk: Buffer) => {
    output += chunk.toString('utf8');
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  onTestFailed(() => console.error(`the ${name} quick start printed:\n${output || '(nothing)'}`));
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const url = `http://localhost:${port}`;
  const deadline = Date.now() + 15_000;
  while (!(await canConnect(url))) {
    if (exited) throw new Error(`the ${name} quick start exited before listening:\n${output}`);
    if (Date.now() > deadline) throw new Error(`the ${name} quick start did not listen within 15 s:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { url, stop: () => stop(child) };
}

describe('README quick start', () => {
  it.each(FRAMEWORKS)('%s: runs as written and counts the visits of each visitor', async (framework) => {
    const sections = quickStartBlocks(await readFile(join(ROOT, 'README.md'), 'utf8'));
    const heading = [...sections.keys()].find((text) => text === framework || text.startsWith(`${framework} `));
    if (!heading) throw new Error(`README.md has no "### ${framework}" under "## Quick start"`);
    const blocks = sections.get(heading) ?? [];
    expect(blocks.length, `"### ${heading}" has no \`\`\`ts block`).toBeGreaterThan(0);

    for (const block of blocks) {
      const lines = block.split('\n').length;
      expect(lines, `a block of "### ${heading}" is longer than ${MAX_BLOCK_LINES} lines`).toBeLessThanOrEqual(
        MAX_BLOCK_LINES,
      );
      const port = await freePort();
      const app = await run(framework, runnable(block, port), port);

      const jar = createCookieJar();
      const first = await jar.request(`${app.url}/`);
      expect(first.status).toBe(200);
      const id = /^visit 1 by (\S+)\n$/.exec(first.body)?.[1];
      expect(id, `first response: ${JSON.stringify(first.body)}`).toBeDefined();
      const second = await jar.request(`${app.url}/`);
      expect(second.body).toBe(`visit 2 by ${id}\n`);

      const other = await createCookieJar().request(`${app.url}/`);
      expect(other.body).toMatch(/^visit 1 by \S+\n$/);
      expect(other.body).not.toBe(`visit 1 by ${id}\n`);

      await app.stop();
    }
  });
});
