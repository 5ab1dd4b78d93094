import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { createVisitorState, type VisitorStateError } from '../../src/index.js';
import { headersOnlyResponse } from '../helpers/http.js';
import { freePort, need } from '../helpers/services.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const SECRET = 'postgres-restart-secret-0123456789abcdef';

/** The machine's PostgreSQL programs (Debian keeps them under /usr/lib/postgresql/N/bin). */
async function postgresBin(): Promise<string | undefined> {
  const found = await run('pg_config', ['--bindir']).then(
    ({ stdout }) => stdout.trim(),
    () => undefined,
  );
  return found && existsSync(join(found, 'initdb')) ? found : undefined;
}

const bin = await postgresBin();
const available = await need(
  'initdb and pg_ctl',
  async () => bin !== undefined && (await run('id', ['-u', 'postgres']).then(() => true)),
  'install PostgreSQL (apt-get install -y postgresql), which brings initdb, pg_ctl and the postgres user',
);

/** A PostgreSQL of this test's own, on a free port, run as the postgres user, in a temporary folder. */
async function privatePostgres() {
  const dir = await mkdtemp(join(tmpdir(), 'visitor-state-pg-'));
  await chown(
    dir,
    Number((await run('id', ['-u', 'postgres'])).stdout),
    Number((await run('id', ['-g', 'postgres'])).stdout),
  );
  const port = await freePort();
  const data = join(dir, 'data');
  const asPostgres = (program: string, args: string[]) =>
    run('runuser', ['-u', 'postgres', '--', join(bin as string, program), ...args], { cwd: dir });
  await asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
  const ctl = (...args: string[]) => asPostgres('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', ...args]);
  await ctl('-o', options, 'start');
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    /** As `pg_ctlcluster … restart` does: a fast shutdown, then a start. */
    restart: () => ctl('-m', 'fast', '-o', options, 'restart'),
    stop: async () => {
      await ctl('-m', 'immediate', 'stop').catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe.runIf(available)('a PostgreSQL restart under a running application', () => {
  let server: Awaited<ReturnType<typeof privatePostgres>> | undefined;
  afterAll(async () => {
    await server?.stop();
  });

  it('costs only the requests made while it is down, and recovers by itself', async () => {
    server = await privatePostgres();
    const errors: VisitorStateError[] = [];
    const visitors = createVisitorState({ secret: SECRET, store: server.url, onError: (error) => errors.push(error) });
    await visitors.ready();
    const first = headersOnlyResponse();
    await visitors.resolve({ headers: {} }, first);
    const cookie = first.cookie();

    const REQUESTS_PER_SECOND = 50;
    const SECONDS = 14;
    const RESTART_AT_S = 4;
    const started = Date.now();
    const failures = new Array<number>(SECONDS).fill(0);
    const requests = new Array<number>(SECONDS).fill(0);
    let acknowledged: number | undefined;
    let outage: { from: number; to: number } | undefined;

    const restart = sleep(RESTART_AT_S * 1_000).then(async () => {
      const from = (Date.now() - started) / 1_000;
      await server?.restart();
      outage = { from, to: (Date.now() - started) / 1_000 };
    });

    // One request every 20 ms: read the counter the last request wrote, write the next value.
    for (let i = 0; Date.now() - started < SECONDS * 1_000; i++) {
      const second = Math.floor((Date.now() - started) / 1_000);
      const errorsBefore = errors.length;
      const visitor = await visitors.resolve({ headers: { cookie } }, headersOnlyResponse());
      const read = await visitor.cache.get<number>('ha:counter');
      const wrote = await visitor.cache.set('ha:counter', i).then(
        (result: unknown) => result !== false,
        () => false,
      );
      const failed = errors.length > errorsBefore || !wrote || read !== acknowledged;
      if (wrote) acknowledged = i;
      if (second < SECONDS) {
        requests[second] = (requests[second] ?? 0) + 1;
        if (failed) failures[second] = (failures[second] ?? 0) + 1;
      }
      await sleep(1_000 / REQUESTS_PER_SECOND);
    }
    await restart;

    const table = failures.map((n, s) => `${s}s ${n}/${requests[s]}`).join(', ');
    const window = outage as { from: number; to: number };
    console.log(
      `PostgreSQL restart (pg_ctl restart -m fast) from ${window.from.toFixed(1)} s to ${window.to.toFixed(1)} s; ` +
        `failed requests per second: ${table}`,
    );
    const lastFailure = failures.findLastIndex((n) => n > 0);
    console.log(
      `failures in all: ${failures.reduce((a, b) => a + b, 0)} of ${requests.reduce((a, b) => a + b, 0)} requests; ` +
        `the last in second ${lastFailure}; the server was back at ${window.to.toFixed(1)} s`,
    );

    // Before the restart, nothing failed; from a second after the server was back, nothing failed.
    for (let s = 0; s < Math.floor(window.from); s++) expect(failures[s], `second ${s}`).toBe(0);
    for (let s = Math.ceil(window.to) + 1; s < SECONDS; s++) expect(failures[s], `second ${s}`).toBe(0);
    expect(failures.some((n) => n > 0)).toBe(true);

    // No acknowledged write was lost: a fresh instance reads the last one.
    await visitors.close();
    const fresh = createVisitorState({ secret: SECRET, store: server.url });
    const again = await fresh.resolve({ headers: { cookie } }, headersOnlyResponse());
    expect(await again.cache.get('ha:counter')).toBe(acknowledged);
    await fresh.close();
  }, 60_000);
});
