import { createServer } from 'node:http';
import express from 'express';
import { GEO, listen } from './shared.js';

// The baseline of the Express servers: the same route and body, with no visitor and no session.
const app = express();
app.get('/', (_req, res) => {
  res.json(GEO);
});
listen(createServer(app));
