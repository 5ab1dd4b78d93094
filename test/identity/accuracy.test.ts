import { describe, expect, it } from 'vitest';
import {
  cookieResolver,
  createVisitorState,
  fingerprintResolver,
  type NodeLikeResponse,
  nodeRequestView,
  nodeResponseView,
} from '../../src/index.js';

// How well identity holds for a population behind shared fingerprints: households and offices
// (one address, one browser) with clients that keep cookies ("keepers") and clients that keep
// none ("refusers"), all taking turns. Set PRINT_ACCURACY=1 to print the figures.

const UAS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
];
const FINGERPRINTS = 60;
const REQUESTS = 5;

interface Client {
  readonly name: string;
  readonly keeps: boolean;
  readonly ip: string;
  readonly ua: string;
  cookie: string | undefined;
  readonly ids: string[];
  readonly reads: unknown[];
}

/** A small deterministic generator, so every run sees one population. */
function generator(seed: number): () => number {
  let state = seed;
  return () => {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    return state / 2 ** 32;
  };
}

function population(): Client[] {
  const random = generator(11);
  const clients: Client[] = [];
  for (let f = 0; f < FINGERPRINTS; f++) {
    const size = 1 + Math.floor(random() * 4);
    for (let c = 0; c < size; c++) {
      clients.push({
        name: `f${f}c${c}`,
        keeps: random() < 0.6,
        ip: `198.51.${100 + Math.floor(f / 250)}.${f % 250}`,
        ua: UAS[f % UAS.length] as string,
        cookie: undefined,
        ids: [],
        reads: [],
      });
    }
  }
  return clients;
}

const fakeResponse = (): NodeLikeResponse & { cookies: string[] } => {
  const headers = new Map<string, number | string | readonly string[]>();
  return {
    cookies: [],
    headersSent: false,
    getHeader: (name) => headers.get(name) as string | undefined,
    setHeader(name, value) {
      headers.set(name, value);
      if (name === 'set-cookie') this.cookies = Array.isArray(value) ? [...value] : [String(value)];
    },
  };
};

async function simulate() {
  const visitors = createVisitorState({
    secret: 'accuracy-secret-that-is-long-enough-01',
    trustProxy: 'loopback',
    resolvers: [cookieResolver(), fingerprintResolver()],
  });
  const clients = population();
  const random = generator(7);
  for (let round = 0; round < REQUESTS; round++) {
    const order = [...clients].sort(() => random() - 0.5);
    for (const client of order) {
      const headers: Record<string, string> = { 'user-agent': client.ua, 'x-forwarded-for': client.ip };
      if (client.cookie) headers.cookie = client.cookie;
      const res = fakeResponse();
      const visitor = await visitors.resolveView(
        nodeRequestView({ headers, socket: { remoteAddress: '127.0.0.1' } }),
        nodeResponseView(res),
        {},
      );
      client.ids.push(visitor.id);
      if (round === 0) await visitor.cache.set('sim:mine', client.name);
      else client.reads.push(await visitor.cache.get('sim:mine'));
      const line = res.cookies.find((c) => c.startsWith('vsid='));
      if (line && client.keeps) client.cookie = line.slice(0, line.indexOf(';'));
    }
  }
  await visitors.close();

  const owners = new Map<string, Set<string>>();
  for (const client of clients) {
    for (const id of client.ids) owners.set(id, (owners.get(id) ?? new Set()).add(client.name));
  }
  const keepers = clients.filter((c) => c.keeps);
  const share = (list: Client[], test: (c: Client) => boolean) =>
    list.length === 0 ? 1 : list.filter(test).length / list.length;
  const continuous = (from: number) => (c: Client) => new Set(c.ids.slice(from)).size === 1;
  const alone = (from: number) => (c: Client) => c.ids.slice(from).every((id) => owners.get(id)?.size === 1);
  return {
    keepers: keepers.length,
    refusers: clients.length - keepers.length,
    continuityFromSecond: share(keepers, continuous(1)),
    mergedFromSecond: 1 - share(keepers, alone(1)),
    continuityFromFirst: share(keepers, continuous(0)),
    mergedFromFirst: 1 - share(keepers, alone(0)),
    keepsFirstWrite: share(keepers, (c) => c.reads.every((read) => read === c.name)),
    refusersRecognised: share(
      clients.filter((c) => !c.keeps),
      (c) => new Set(c.ids.slice(1)).size === 1,
    ),
  };
}

describe('identity accuracy over a population behind shared fingerprints', () => {
  it('keeps every client that keeps cookies on one ID of its own and with its own state', async () => {
    const figures = await simulate();
    if (process.env.PRINT_ACCURACY) console.info(JSON.stringify(figures, null, 2));
    expect(figures.keepers).toBeGreaterThan(50);
    expect(figures.continuityFromSecond).toBe(1);
    expect(figures.mergedFromSecond).toBe(0);
    expect(figures.keepsFirstWrite).toBe(1);
    // Counted from the first request on, a keeper is lent a shared ID only when its fingerprint
    // already held state, so some keepers start on the shared ID; none is ever merged for good.
    expect(figures.continuityFromFirst).toBeGreaterThan(0.3);
    expect(figures.refusersRecognised).toBe(1);
  });
});
