// The package with the newest majors of what it accepts: cookie 2 (which removed parse and
// serialize) and keyv 6, both of which need Node 22. Installed from the `npm pack` tarball in a
// project of its own, so the library's own imports resolve to them, not to the repository's.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCookieJar } from '../helpers/cookie-jar.js';
import { canConnect, freePort } from '../helpers/services.js';
import { type Program, run, sh, start, tarball, tempFolder } from './project.js';

const SECRET = 'next-majors-package-secret-long-enough-01';
// keyv 6 declares node >= 22.19; cookie 2, >= 22.
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
const runtimeHasThem = major > 22 || (major === 22 && minor >= 19);
if (!runtimeHasThem)
  console.warn(`skipped: cookie 2 and keyv 6 need Node 22.19 or later; this is Node ${process.version}`);

const APP = `
import { createServer } from 'node:http';
import Keyv from 'keyv';
import { createVisitorState } from 'visitor-state';
import { visitorState } from 'visitor-state/node';

const errors = [];
const visitors = createVisitorState({
  store: new Keyv({ namespace: 'next-majors' }),
  bins: { 'ui:*': { store: 'cookie:' } },
  onError: (error) => errors.push(error.message),
});
const visitorOf = visitorState(visitors);
createServer(async (req, res) => {
  const visitor = await visitorOf(req, res);
  const [visits = 0, theme] = await visitor.cache.getMany(['demo:visits', 'ui:theme']);
  await visitor.cache.set('demo:visits', visits + 1);
  const chosen = new URL(req.url, 'http://x').searchParams.get('theme');
  if (chosen) await visitor.cache.set('ui:theme', chosen);
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ id: visitor.id, source: visitor.source, visits: visits + 1, theme: chosen ?? theme ?? null, errors }));
}).listen(Number(process.env.PORT));
`;

describe.runIf(runtimeHasThem)('the package with cookie 2 and keyv 6', { timeout: 120_000 }, () => {
  let project = '';
  let remove: () => Promise<void> = async () => {};
  let app: Program | undefined;

  beforeAll(async () => {
    const folder = await tempFolder('visitor-state-majors-');
    project = folder.path;
    remove = folder.remove;
    const packed = await tarball(project);
    await sh('npm init -y && npm pkg set type=module', project);
    await run('npm', ['install', packed, 'cookie@^2', 'keyv@^6'], project);
  }, 600_000);

  afterAll(async () => {
    await app?.stop();
    await remove();
  });

  it('resolves both from the library itself', async () => {
    const version = async (path: string) =>
      JSON.parse(await readFile(join(project, 'node_modules', path, 'package.json'), 'utf8')).version as string;
    expect(await version('cookie')).toMatch(/^2\./);
    expect(await version('keyv')).toMatch(/^6\./);
    // No copy of an older cookie under the package: its import is the one above.
    await expect(
      readFile(join(project, 'node_modules/visitor-state/node_modules/cookie/package.json')),
    ).rejects.toThrow(/ENOENT/);
  });

  it('keeps the visitor cookie, a sealed cookie bin and a Keyv 6 store across requests', async () => {
    await writeFile(join(project, 'app.js'), APP);
    const port = await freePort();
    app = start(process.execPath, ['app.js'], project, { PORT: String(port), VISITOR_STATE_SECRET: SECRET });
    const url = `http://127.0.0.1:${port}/`;
    for (let tries = 0; !(await canConnect(url)); tries++) {
      if (app.child.exitCode !== null || tries > 150) throw new Error(`the app did not listen:\n${app.output()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    const jar = createCookieJar();
    const first = (await jar.request(`${url}?theme=dark`)).json<Record<string, unknown>>();
    expect(first).toMatchObject({ source: 'new', visits: 1, theme: 'dark', errors: [] });
    expect(Object.keys(jar.cookies()).sort()).toEqual(['vs_data.0', 'vsid']);
    const second = (await jar.request(url)).json<Record<string, unknown>>();
    expect(second).toMatchObject({ id: first.id, source: 'cookie', visits: 2, theme: 'dark', errors: [] });
    const stranger = (await createCookieJar().request(url)).json<Record<string, unknown>>();
    expect(stranger).toMatchObject({ source: 'new', visits: 1, theme: null });
  });
});
