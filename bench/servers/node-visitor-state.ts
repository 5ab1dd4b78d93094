import { createServer } from 'node:http';
import { load } from '../library.js';
import { BIN, GEO, listen, SECRET, SETUP_PATH } from './shared.js';

const { createVisitorState } = await load<typeof import('../../src/index.js')>('index');
const { visitorState } = await load<typeof import('../../src/adapters/node-http.js')>('adapters/node-http');

const visitorOf = visitorState(createVisitorState({ secret: SECRET }));

listen(
  createServer(async (req, res) => {
    const visitor = await visitorOf(req, res);
    if (req.url === SETUP_PATH) await visitor.cache.set(BIN, GEO);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(await visitor.cache.get(BIN)));
  }),
);
