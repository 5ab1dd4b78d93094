import { createServer } from 'node:http';
import { GEO, listen } from './shared.js';

// The baseline of node:http + visitor-state: the same body, built the same way, without the visitor.
listen(
  createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(GEO));
  }),
);
