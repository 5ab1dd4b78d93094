import { createHmac, randomBytes } from 'node:crypto';
import { parse as parseCookies } from 'cookie';
import UAParser from 'ua-parser-js';
import type { NodeLikeRequest, NodeLikeResponse, VisitorState } from '../src/index.js';
import { type FakeResponse, fakeResponse, load, measuredCode } from './library.js';
import { compare, heading, measure, sink, summary } from './report.js';

const { cookieResolver, createProxyTrust, createVisitorState, fingerprintResolver, nodeRequestView, nodeResponseView } =
  await load<typeof import('../src/index.js')>('index');

const SECRET = 'bench-secret-4b1c7e0d9a2f48e6b3c5d7e9f1a3b5c7';
const UA =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';
// A realistic Cookie header: the visitor cookie among five others.
const OTHER_COOKIES = '_ga=GA1.2.1234567890.1700000000; theme=dark; lang=fr-FR; consent=analytics; cart=3';
const PEER = '203.0.113.7';
// Calls per timed sample: each sample lasts tens of microseconds, far above the timer's own cost.
const PER_SAMPLE = 20;

const fakeRequest = (cookie: string | undefined, ua = UA): NodeLikeRequest => ({
  headers: cookie === undefined ? { 'user-agent': ua } : { cookie, 'user-agent': ua },
  socket: { remoteAddress: PEER, encrypted: false },
});

/** Resolves the way an adapter does: fresh views and a fresh per-request key. */
const resolveOnce = (visitors: VisitorState, req: NodeLikeRequest, res: NodeLikeResponse) =>
  visitors.resolveView(nodeRequestView(req), nodeResponseView(res), {});

function setCookieOf(res: FakeResponse, name: string): string | undefined {
  const header = res.headers.get('set-cookie');
  const lines = Array.isArray(header) ? header : header === undefined ? [] : [String(header)];
  const line = lines.find((l) => l.startsWith(`${name}=`));
  return line?.slice(name.length + 1, line.indexOf(';'));
}

async function expectSource(
  visitors: VisitorState,
  req: NodeLikeRequest,
  source: string,
  setsCookie: boolean,
): Promise<void> {
  const res = fakeResponse();
  const visitor = await resolveOnce(visitors, req, res);
  const sets = setCookieOf(res, 'vsid') !== undefined;
  if (visitor.source !== source || sets !== setsCookie) {
    throw new Error(`expected a '${source}' visitor (Set-Cookie: ${setsCookie}); got '${visitor.source}' (${sets})`);
  }
}

const visitors = createVisitorState({ secret: SECRET });
const withFingerprint = createVisitorState({ secret: SECRET, resolvers: [cookieResolver(), fingerprintResolver()] });

// A valid visitor cookie, as a first visit would have set it.
const first = fakeResponse();
await resolveOnce(visitors, fakeRequest(OTHER_COOKIES), first);
const signed = setCookieOf(first, 'vsid');
if (signed === undefined) throw new Error('a first visit set no visitor cookie');
const returningHeader = `${OTHER_COOKIES}; vsid=${signed}`;
const returning = fakeRequest(returningHeader);
const newcomer = fakeRequest(OTHER_COOKIES);

await expectSource(visitors, returning, 'cookie', false);
await expectSource(visitors, newcomer, 'new', true);
// A fingerprint lends its shared ID only once it holds state: a first visit stores a bin.
await expectSource(withFingerprint, newcomer, 'new', true);
await (await resolveOnce(withFingerprint, newcomer, fakeResponse())).cache.set('demo:seen', 1);
await expectSource(withFingerprint, newcomer, 'fingerprint', true);

const hmacKey = randomBytes(32);
let chrome = 0;
const nextUa = () => {
  chrome++;
  return `Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.${chrome}.${chrome % 97} Safari/537.36`;
};

// X-Forwarded-For as nginx's $proxy_add_x_forwarded_for passes it on: whatever the client sent,
// then the address the proxy saw. A hostile client sends 64 KB of spaces, tabs and commas.
const behindProxy = createProxyTrust(['loopback']);
const proxied = (xff: string) =>
  nodeRequestView({ headers: { 'x-forwarded-for': xff }, socket: { remoteAddress: '127.0.0.1' } });
const shortXff = proxied(`${'198.51.100.1, '.repeat(6)}203.0.113.7`.padStart(100, ' '));
const hostileXff = proxied(`${' \t,'.repeat(16_384)}, 203.0.113.7`.slice(-65_536));
// Here the nearest hop is a trusted proxy, so the walk must read the 64 KB entry to its left.
const spacesXff = proxied(`${' '.repeat(65_536 - 11)}, 127.0.0.1`);
for (const request of [shortXff, hostileXff]) {
  if (behindProxy.clientIp(request) !== '203.0.113.7') throw new Error('the proxy walk found another client');
}
if (behindProxy.clientIp(spacesXff) !== undefined) throw new Error('an empty hop must leave the client unknown');

const [
  cookiePath,
  cookieBaseline,
  newPath,
  newBaseline,
  fpCached,
  fpUncached,
  parseCached,
  parseUncached,
  xffShort,
  xffHostile,
  xffSpaces,
] = await measure(
  [
    {
      label: 'cookie visitor resolve()',
      ops: PER_SAMPLE,
      run: async () => {
        for (let i = 0; i < PER_SAMPLE; i++) sink.value = await resolveOnce(visitors, returning, fakeResponse());
      },
    },
    {
      label: 'cookie.parse + createHmac',
      ops: PER_SAMPLE,
      run: () => {
        for (let i = 0; i < PER_SAMPLE; i++) {
          const cookies = parseCookies(returningHeader);
          sink.value = createHmac('sha256', hmacKey)
            .update(cookies.vsid ?? '')
            .digest();
        }
      },
    },
    {
      label: 'new visitor resolve() (mint, sign, Set-Cookie)',
      ops: PER_SAMPLE,
      run: async () => {
        for (let i = 0; i < PER_SAMPLE; i++) sink.value = await resolveOnce(visitors, newcomer, fakeResponse());
      },
    },
    {
      label: 'cookie.parse + createHmac + randomBytes(16)',
      ops: PER_SAMPLE,
      run: () => {
        for (let i = 0; i < PER_SAMPLE; i++) {
          parseCookies(OTHER_COOKIES);
          const id = randomBytes(16).toString('base64url');
          sink.value = createHmac('sha256', hmacKey).update(id).digest();
        }
      },
    },
    {
      label: 'fingerprint visitor resolve(), repeat client',
      ops: PER_SAMPLE,
      run: async () => {
        for (let i = 0; i < PER_SAMPLE; i++) {
          sink.value = await resolveOnce(withFingerprint, newcomer, fakeResponse());
        }
      },
    },
    {
      label: "fingerprint first visit resolve(), new UA each time (reads the shared ID's state record)",
      ops: PER_SAMPLE,
      run: async () => {
        for (let i = 0; i < PER_SAMPLE; i++) {
          sink.value = await resolveOnce(withFingerprint, fakeRequest(OTHER_COOKIES, nextUa()), fakeResponse());
        }
      },
    },
    {
      label: 'ua-parser-js 1.0 getResult(), same UA',
      ops: PER_SAMPLE,
      run: () => {
        for (let i = 0; i < PER_SAMPLE; i++) sink.value = new UAParser(UA).getResult();
      },
    },
    {
      label: 'ua-parser-js 1.0 getResult(), new UA each time',
      ops: PER_SAMPLE,
      run: () => {
        for (let i = 0; i < PER_SAMPLE; i++) sink.value = new UAParser(nextUa()).getResult();
      },
    },
    {
      label: 'clientIp, 100-byte X-Forwarded-For from a trusted proxy',
      ops: PER_SAMPLE,
      run: () => {
        for (let i = 0; i < PER_SAMPLE; i++) sink.value = behindProxy.clientIp(shortXff);
      },
    },
    {
      label: 'clientIp, 64 KB X-Forwarded-For of spaces, tabs and commas from a trusted proxy',
      ops: PER_SAMPLE,
      run: () => {
        for (let i = 0; i < PER_SAMPLE; i++) sink.value = behindProxy.clientIp(hostileXff);
      },
    },
    {
      label: 'clientIp, 64 KB X-Forwarded-For of spaces read to its end (trusted hops)',
      ops: PER_SAMPLE,
      run: () => {
        for (let i = 0; i < PER_SAMPLE; i++) sink.value = behindProxy.clientIp(spacesXff);
      },
    },
  ],
  { timeMs: 3_000, warmupMs: 400 },
);

if (!cookiePath || !cookieBaseline || !newPath || !newBaseline || !fpCached || !fpUncached)
  throw new Error('unmeasured');
if (!parseCached || !parseUncached || !xffShort || !xffHostile || !xffSpaces) throw new Error('unmeasured');

heading(
  `identity: resolve() per request, fake node req/res, fresh views per call; a repeat client's reduced UA and fingerprint ID are remembered, a new UA's are not; ${measuredCode()}`,
);
compare(cookiePath, cookieBaseline, { target: { atMost: 2 } });
compare(newPath, newBaseline);
compare(fpCached, parseCached);
compare(fpUncached, parseUncached);
compare(fpCached, cookiePath, { target: { atMost: 5 } });
// Linear parsing: 655 times the bytes may cost at most 655 times the time (the length ratio).
compare(xffHostile, xffShort, { target: { atMost: 655 } });
compare(xffSpaces, xffShort, { target: { atMost: 655 } });
summary('identity');
