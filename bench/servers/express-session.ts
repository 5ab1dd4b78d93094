import { createServer } from 'node:http';
import express from 'express';
import session from 'express-session';
import { BIN, GEO, listen, SECRET, SETUP_PATH } from './shared.js';

declare module 'express-session' {
  interface SessionData {
    [BIN]: typeof GEO;
  }
}

// The work of Express + visitor-state, done with express-session's MemoryStore in its recommended
// and fastest settings: nothing saved unless changed, no session for a client that stores nothing.
const app = express();
app.use(session({ secret: SECRET, resave: false, saveUninitialized: false }));
app.post(SETUP_PATH, (req, res) => {
  req.session[BIN] = GEO;
  res.json(req.session[BIN]);
});
app.get('/', (req, res) => {
  res.json(req.session[BIN]);
});
listen(createServer(app));
