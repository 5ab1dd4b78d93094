import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { send } from '../test/helpers/http.js';
import { measuredCode } from './library.js';
import { compare, type Figure, heading, summary, type Target } from './report.js';
import { GEO, type Listening, SETUP_PATH } from './servers/shared.js';

// Requests per second of real servers under autocannon. Each server runs in a child process of its
// own, so that it does not share an event loop with the load generator; one is loaded at a time,
// and the servers take turns, round by round, so that a change of load on the machine falls on a
// figure and its baseline alike. A ratio is the median of the rounds' own ratios: in each round a
// server and its baseline run back to back, so a slow spell of the shared machine that spans both
// cancels out, where it would move a median of rates taken apart.

/** What of autocannon 8's result is read here (it ships no types). */
interface LoadResult {
  readonly requests: { readonly average: number; readonly total: number };
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
}
/** A run: awaited for its result; its `response` events carry each response time in ms, unrounded. */
type Run = PromiseLike<LoadResult> & {
  on(event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void): unknown;
};
type Autocannon = (options: {
  url: string;
  connections: number;
  pipelining: number;
  duration: number;
  headers: Record<string, string>;
}) => Run;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const CONNECTIONS = 10;
const PIPELINING = 1;
const WARMUP_S = 1;
const DURATION_S = 2;
const ROUNDS = 9;
const START_TIMEOUT_MS = 20_000;

const serversDir = join(dirname(fileURLToPath(import.meta.url)), 'servers');
const EXPECTED_BODY = JSON.stringify(GEO);

interface Spec {
  readonly label: string;
  /** The file in bench/servers/, without `.ts`. */
  readonly file: string;
  /** Whether a first request to SETUP_PATH gives a cookie and stores GEO; if not, the cookie of `cookieOf` is sent. */
  readonly setup: boolean;
  readonly cookieOf?: string;
}

const SPECS: readonly Spec[] = [
  { label: 'bare node:http', file: 'node-bare', setup: false, cookieOf: 'node-visitor-state' },
  { label: 'node:http + visitor-state', file: 'node-visitor-state', setup: true },
  { label: 'bare Express', file: 'express-bare', setup: false, cookieOf: 'express-visitor-state' },
  { label: 'Express + visitor-state', file: 'express-visitor-state', setup: true },
  { label: 'Express + express-session', file: 'express-session', setup: true },
];

interface Running {
  readonly spec: Spec;
  readonly child: ChildProcess;
  readonly url: string;
  /** The Cookie header of a returning visitor, sent with every measured request. */
  cookie: string;
  readonly rates: number[];
  readonly latencies: number[];
  responses: number;
  failures: number;
}

const children: ChildProcess[] = [];
// A last resort for an exception: the servers also exit when their IPC channel to this process closes.
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

async function start(spec: Spec): Promise<Running> {
  // fork() passes this process's execArgv, so the server runs TypeScript through tsx as this process does;
  // the library it loads is the compiled build named in the environment, as here.
  const child = fork(join(serversDir, `${spec.file}.ts`), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(child);
  const listening = new Promise<Listening>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${spec.label} did not listen within ${START_TIMEOUT_MS} ms`)),
      START_TIMEOUT_MS,
    );
    child.on('message', (message: Partial<Listening>) => {
      if (typeof message.port !== 'number') return;
      clearTimeout(timer);
      resolve({ port: message.port });
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${spec.label} exited before listening (${signal ?? code})`));
    });
  });
  const { port } = await listening;
  return {
    spec,
    child,
    url: `http://127.0.0.1:${port}/`,
    cookie: '',
    rates: [],
    latencies: [],
    responses: 0,
    failures: 0,
  };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

const cookieHeader = (setCookies: readonly string[]): string => setCookies.map((line) => line.split(';')[0]).join('; ');

/** A first request, as a new visitor: returns the Cookie header it was given. */
async function firstVisit(server: Running): Promise<string> {
  const reply = await send(new URL(SETUP_PATH, server.url).href, { method: 'POST' });
  if (reply.status !== 200 || reply.setCookies.length === 0) {
    throw new Error(`${server.spec.label}: the first request got ${reply.status} and no cookie`);
  }
  return cookieHeader(reply.setCookies);
}

/** One measured request, outside the load: what the load generator's requests get. */
async function probe(server: Running): Promise<{ ok: boolean; result: string }> {
  const reply = await send(server.url, { headers: { cookie: server.cookie } });
  const body = reply.body === EXPECTED_BODY ? 'the stored value' : JSON.stringify(reply.body.slice(0, 60));
  const cookie = reply.setCookies.length === 0 ? 'no Set-Cookie' : `Set-Cookie ${cookieHeader(reply.setCookies)}`;
  return {
    ok: reply.status === 200 && reply.body === EXPECTED_BODY && reply.setCookies.length === 0,
    result: `${reply.status}, body ${body}, ${cookie}`,
  };
}

/** Loads a server; the mean latency is computed here, as autocannon's own rounds to whole milliseconds. */
async function load(server: Running, seconds: number): Promise<LoadResult & { meanLatencyMs: number }> {
  const run = autocannon({
    url: server.url,
    connections: CONNECTIONS,
    pipelining: PIPELINING,
    duration: seconds,
    headers: { cookie: server.cookie },
  });
  let sum = 0;
  let count = 0;
  run.on('response', (_client, _status, _bytes, ms) => {
    sum += ms;
    count++;
  });
  const result = await run;
  return { ...result, meanLatencyMs: count > 0 ? sum / count : Number.NaN };
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/** The median of the round-by-round ratios of two servers' rates. */
const pairedRatio = (server: Running, baseline: Running): number =>
  median(server.rates.map((rate, round) => rate / (baseline.rates[round] as number)));

function figureOf(server: Running): Figure {
  const rate = median(server.rates);
  return {
    label: `${server.spec.label}, mean latency ${median(server.latencies).toFixed(3)} ms`,
    nsPerOp: 1e9 / rate,
    opsPerSecond: rate,
  };
}

async function main(): Promise<void> {
  const servers = await Promise.all(SPECS.map(start));
  const byFile = new Map(servers.map((server) => [server.spec.file, server]));
  for (const server of servers) if (server.spec.setup) server.cookie = await firstVisit(server);
  for (const server of servers) {
    if (server.spec.cookieOf) server.cookie = byFile.get(server.spec.cookieOf)?.cookie ?? '';
  }
  const probes = await Promise.all(servers.map(probe));

  heading(
    `http: requests/s (shown as ops/s) of a returning visitor reading one value (express-session: MemoryStore), ` +
      `autocannon ${CONNECTIONS} connections, pipelining ${PIPELINING}, ${DURATION_S} s per server × ${ROUNDS} rounds, ` +
      `rates the median of the rounds, ratios the median of the rounds' own ratios; each server in a child process; ${measuredCode()}`,
  );
  if (probes.every((p) => p.ok)) {
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? servers : [...servers].reverse();
      for (const server of order) {
        if (round === 0) await load(server, WARMUP_S);
        const result = await load(server, DURATION_S);
        server.rates.push(result.requests.average);
        server.latencies.push(result.meanLatencyMs);
        server.responses += result.requests.total;
        server.failures += result.errors + result.timeouts + result.non2xx;
      }
    }
    const line = (server: string, baseline: string, target?: Target) => {
      const [a, b] = [byFile.get(server), byFile.get(baseline)];
      if (!a || !b) throw new Error(`unmeasured: ${server} or ${baseline}`);
      compare(figureOf(a), figureOf(b), { by: 'rate', ratio: pairedRatio(a, b), ...(target && { target }) });
    };
    line('node-visitor-state', 'node-bare', { atLeast: 0.85 });
    line('express-visitor-state', 'express-session', { atLeast: 1.2 });
    line('express-visitor-state', 'express-bare');
    line('express-session', 'express-bare');
    line('express-bare', 'node-bare');
  }

  // Not targets: a server that fails here makes the figures meaningless, so the bench fails instead.
  heading('http: one response of each server to the returning visitor, and errors under load');
  let working = true;
  for (const [i, server] of servers.entries()) {
    const p = probes[i] ?? { ok: false, result: 'not probed' };
    const measured = server.rates.length > 0;
    const ok = p.ok && (!measured || server.failures === 0);
    working &&= ok;
    const underLoad = measured
      ? `; under load ${server.responses} responses, ${server.failures} errors or non-2xx`
      : '';
    console.log(`${server.spec.label.padEnd(50)}${p.result}${underLoad}   (${ok ? 'as expected' : 'NOT AS EXPECTED'})`);
  }
  summary('http');
  if (!working) {
    console.error('http: a server did not answer as expected (200, the stored value, no Set-Cookie, no errors)');
    process.exitCode = 1;
  }
}

try {
  await main();
} finally {
  await Promise.all(children.map(stop));
}
