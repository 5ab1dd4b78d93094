import { createServer } from 'node:http';
import express from 'express';
import { load } from '../library.js';
import { BIN, GEO, listen, SECRET, SETUP_PATH } from './shared.js';

const { createVisitorState } = await load<typeof import('../../src/index.js')>('index');
const { visitorState } = await load<typeof import('../../src/adapters/express.js')>('adapters/express');

const app = express();
app.use(visitorState(createVisitorState({ secret: SECRET })));
app.post(SETUP_PATH, async (req, res) => {
  await req.visitor.cache.set(BIN, GEO);
  res.json(await req.visitor.cache.get(BIN));
});
app.get('/', async (req, res) => {
  res.json(await req.visitor.cache.get(BIN));
});
listen(createServer(app));
