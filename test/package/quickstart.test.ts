// Every Quick start of the README, run as written by a new user: a project made by `npm init -y`
// plus the README's setup lines, the package installed from the `npm pack` tarball, each program
// started with `npx tsx app.ts`. Outside the repository, so nothing resolves from its node_modules.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { createCookieJar } from '../helpers/cookie-jar.js';
import { canConnect, freePort } from '../helpers/services.js';
import { type Program, ROOT, run, sh, start, tarball, tempFolder } from './project.js';

const SECRET = 'quick-start-package-secret-long-enough-01';
const FRAMEWORKS = ['node:http', 'Express', 'Fastify', 'Hono', 'Fetch API'] as const;

interface Section {
  readonly level: number;
  readonly heading: string;
  readonly blocks: Record<'ts' | 'sh', string[]>;
}

/** The `##` and `###` sections of the README with their fenced blocks, by heading. */
function sections(markdown: string): Section[] {
  const found: Section[] = [];
  let fence: { lang: string; lines: string[] } | undefined;
  for (const line of markdown.split('\n')) {
    if (fence) {
      if (line.startsWith('```')) {
        const lang = fence.lang === 'sh' || fence.lang === 'ts' ? fence.lang : undefined;
        if (lang) found.at(-1)?.blocks[lang].push(fence.lines.join('\n'));
        fence = undefined;
      } else fence.lines.push(line);
    } else if (line.startsWith('```')) fence = { lang: line.slice(3).trim(), lines: [] };
    else if (/^#{2,3} /.test(line))
      found.push({
        level: line.indexOf(' '),
        heading: line.replace(/^#+ /, '').trim(),
        blocks: { ts: [], sh: [] },
      });
  }
  return found;
}

/** The `###` sections under the `##` section of that heading. */
const within = (all: Section[], heading: string): Section[] => {
  const from = all.findIndex((s) => s.level === 2 && s.heading === heading);
  const to = all.findIndex((s, i) => i > from && s.level === 2);
  return from === -1 ? [] : all.slice(from + 1, to === -1 ? undefined : to);
};

let project = '';
let removeProject: () => Promise<void> = async () => {};
let quickStarts: Section[] = [];
const running: Program[] = [];

beforeAll(async () => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const all = sections(readme);
  quickStarts = within(all, 'Quick start');
  const install = all.find((s) => s.heading === 'Install');
  const setup = install?.blocks.sh[0];
  if (!setup) throw new Error('README.md has no ```sh block under "## Install"');

  const folder = await tempFolder('visitor-state-quickstart-');
  project = folder.path;
  removeProject = folder.remove;
  const packed = await tarball(folder.path);
  const app = join(project, 'app');
  await mkdir(app);
  // The README's setup lines as they are, but for the package, which comes from the tarball.
  for (const line of setup.split('\n').filter((l) => l.trim() && !l.startsWith('#')))
    await sh(line.replace(/(npm (?:i|install) )visitor-state\b/, `$1${packed}`), app);
  // Each heading names what its framework needs (`npm i express`): installed once, for all of them.
  const peers = quickStarts.flatMap((s) =>
    [...s.heading.matchAll(/`npm i ([^`]+)`/g)].flatMap((m) => m[1]?.split(' ') ?? []),
  );
  await run('npm', ['install', ...new Set(peers)], app);
  // Not a step of the README's: the compiler, for the type check below.
  await run('npm', ['install', '-D', 'typescript@~5.9', '@types/node@^20.19'], app);
  project = app;
}, 600_000);

afterEach(async () => {
  await Promise.all(running.splice(0).map((program) => program.stop()));
});

afterAll(async () => {
  await removeProject();
});

async function listen(program: Program, url: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await canConnect(url))) {
    if (program.child.exitCode !== null) throw new Error(`exited before listening:\n${program.output()}`);
    if (Date.now() > deadline) throw new Error(`did not listen within 30 s:\n${program.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('the Quick start, from the packed package in a new project', { timeout: 300_000 }, () => {
  it('starts from "type": "module" and tsx, as the setup lines say', async () => {
    const pkg = JSON.parse(await readFile(join(project, 'package.json'), 'utf8'));
    expect(pkg.type).toBe('module');
    expect(pkg.dependencies['visitor-state']).toMatch(/^file:.*\.tgz$/);
    expect(pkg.devDependencies).toHaveProperty('tsx');
  });

  it.each(FRAMEWORKS)(
    '%s: `npx tsx app.ts` runs as written and counts the visits of each visitor',
    async (framework) => {
      const section = quickStarts.find((s) => s.heading === framework || s.heading.startsWith(`${framework} `));
      if (!section) throw new Error(`README.md has no "### ${framework}" under "## Quick start"`);
      const [block] = section.blocks.ts;
      if (!block) throw new Error(`"### ${section.heading}" has no \`\`\`ts block`);
      expect(block, 'the block listens on port 3000').toMatch(/\b3000\b/);
      const port = await freePort();
      await writeFile(join(project, 'app.ts'), block.replace(/\b3000\b/g, String(port)));

      const program = start('npx', ['tsx', 'app.ts'], project, { VISITOR_STATE_SECRET: SECRET });
      running.push(program);
      onTestFailed(() => console.error(`the ${framework} quick start printed:\n${program.output() || '(nothing)'}`));
      const url = `http://127.0.0.1:${port}/`;
      await listen(program, url);

      const jar = createCookieJar();
      const first = await jar.request(url);
      expect(first.status).toBe(200);
      const id = /^visit 1 by (\S+)\n$/.exec(first.body)?.[1];
      expect(id, `first response: ${JSON.stringify(first.body)}`).toBeDefined();
      expect((await jar.request(url)).body).toBe(`visit 2 by ${id}\n`);
      expect((await jar.request(url)).body).toBe(`visit 3 by ${id}\n`);
      const stranger = await createCookieJar().request(url);
      expect(stranger.body).toMatch(/^visit 1 by \S+\n$/);
      expect(stranger.body).not.toContain(id);
    },
  );

  it("loads with require('visitor-state') from a .cjs file", async () => {
    await writeFile(
      join(project, 'check.cjs'),
      `const { createVisitorState, ConfigError } = require('visitor-state');
const { visitorState } = require('visitor-state/node');
const visitors = createVisitorState({ secret: ${JSON.stringify(SECRET)} });
let refused;
try { createVisitorState({ store: 'nosuch://x', secret: ${JSON.stringify(SECRET)} }); } catch (e) { refused = e; }
const headers = [];
visitorState(visitors)({ headers: {}, socket: {} }, { headersSent: false, getHeader: () => undefined, setHeader: (n, v) => headers.push([n, v]), appendHeader: (n, v) => headers.push([n, v]) })
  .then(async (visitor) => {
    await visitor.cache.set('demo:visits', 1);
    console.log(JSON.stringify({ id: visitor.id, visits: await visitor.cache.get('demo:visits'), refused: refused instanceof ConfigError, cookie: headers.some(([n]) => n.toLowerCase() === 'set-cookie') }));
    await visitors.close();
  });
`,
    );
    const { output } = await run(process.execPath, ['check.cjs'], project);
    const result = JSON.parse(output.trim().split('\n').at(-1) ?? '');
    expect(result).toMatchObject({ visits: 1, refused: true, cookie: true });
    expect(result.id).toMatch(/^[\w-]{22,}$/);
    expect(output).not.toMatch(/ExperimentalWarning|ERR_REQUIRE/);
  });

  it('type-checks under nodenext what loads, from ES modules and from CommonJS', async () => {
    const types = `ConfigError, createVisitorState, type LazyVisitor, type Storage, type Visitor`;
    await writeFile(
      join(project, 'esm.ts'),
      `import { ${types} } from 'visitor-state';
import { visitorState } from 'visitor-state/node';
export const visitors = createVisitorState();
export const visitorOf = visitorState(visitors);
export const seen = (v: LazyVisitor, w: Visitor, s: Storage): unknown[] => [v.cache, w.id, s.get, ConfigError];
`,
    );
    await writeFile(
      join(project, 'cjs.cts'),
      `import vs = require('visitor-state');
export const visitors: vs.VisitorState = vs.createVisitorState();
export const lazy = (v: vs.LazyVisitor): Promise<vs.Visitor> => v.resolve();
export const error = new vs.ConfigError('x');
`,
    );
    // And it refuses what the package does not export, so the check above is a check: were
    // NoSuchThing exported, the @ts-expect-error would be unused, which is an error too.
    await writeFile(
      join(project, 'refused.ts'),
      `// @ts-expect-error: no such export
import { NoSuchThing } from 'visitor-state';
export const x: unknown = NoSuchThing;
`,
    );
    await writeFile(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          target: 'es2022',
          strict: true,
          noEmit: true,
          types: ['node'],
          // Errors inside node_modules' .d.ts files are not this test's; what the files use of them is checked.
          skipLibCheck: true,
        },
        files: ['esm.ts', 'cjs.cts', 'refused.ts'],
      }),
    );
    await run('npx', ['tsc', '-p', '.'], project);
  });
});
