// A custom resolver: a mobile app identifies itself with `X-Device-Id: <deviceId>.<hmac>`, the HMAC
// made with an app key that the app and this server share. A header that checks out wins over the
// cookie; a forged one is ignored, and the chain goes on as if it were absent.
// Run: DEVICE_APP_KEY=... PORT=3000 npx tsx examples/custom-resolver.ts
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { visitorState } from '../src/adapters/node-http.js';
import { createVisitorState, type Resolver } from '../src/index.js';

/** Verifies `X-Device-Id: <deviceId>.<base64url HMAC-SHA256 of deviceId under appKey>`. */
function deviceResolver(appKey: string): Resolver {
  return {
    name: 'device',
    resolve(ctx) {
      const header = ctx.header('x-device-id');
      const dot = header?.lastIndexOf('.') ?? -1;
      if (header === undefined || dot < 1) return undefined;
      const deviceId = header.slice(0, dot);
      if (!/^[A-Za-z0-9_-]{8,128}$/.test(deviceId)) return undefined;
      const given = Buffer.from(header.slice(dot + 1), 'latin1');
      const expected = Buffer.from(createHmac('sha256', appKey).update(deviceId).digest('base64url'), 'latin1');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
      // Keyed under the server's secret, so the visitor ID does not reveal the device ID.
      return { id: ctx.keys.mac('device', deviceId, 16), confidence: 'high' };
    },
  };
}

const appKey = process.env.DEVICE_APP_KEY;
if (!appKey) throw new Error('set DEVICE_APP_KEY to the key the mobile app signs its device ID with');

const visitors = createVisitorState({ store: process.env.VISITOR_STATE_STORE ?? 'memory:' });
visitors.use(deviceResolver(appKey), { before: 'cookie' });
await visitors.ready();
const visitorOf = visitorState(visitors);

const server = createServer(async (req, res) => {
  const visitor = await visitorOf(req, res);
  const visits = ((await visitor.cache.get<number>('example:visits')) ?? 0) + 1;
  await visitor.cache.set('example:visits', visits);
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ visitor: visitor.id, source: visitor.source, confidence: visitor.confidence, visits }));
});

const port = Number(process.env.PORT ?? 3000);
server.listen(port, () => console.log(`visitor-state example on http://localhost:${port}/`));

const stop = () => {
  server.close();
  server.closeAllConnections();
  void visitors.close().then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
