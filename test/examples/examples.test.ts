import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { createCookieJar } from '../helpers/cookie-jar.js';
import { send } from '../helpers/http.js';
import { freePort } from '../helpers/services.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SECRET = 'examples-smoke-secret-long-enough-0001';

interface RunningExample {
  readonly url: string;
  /** Sends SIGINT and resolves to the exit code. */
  stop(): Promise<number | null>;
}

const children: ChildProcess[] = [];
afterEach(() => {
  // A test that failed before stopping its example must not leave it running.
  for (const child of children.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** Starts `node --import tsx examples/<file>` on a free port and waits until it says it listens. */
async function start(file: string, env: Record<string, string> = {}): Promise<RunningExample> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', `examples/${file}`], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), VISITOR_STATE_SECRET: SECRET, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file} did not listen within 15 s:\n${output}`)), 15_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes(`:${port}/`)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${file} exited with ${code} before listening:\n${output}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () => {
      child.kill('SIGINT');
      return exited;
    },
  };
}

describe('examples/node-http.ts', () => {
  it('remembers a colour per visitor and stops cleanly on SIGINT', async () => {
    const example = await start('node-http.ts');
    const jar = createCookieJar();
    const first = await jar.request(`${example.url}/`);
    expect(first.status).toBe(200);
    expect(first.body).toContain('Your colour: <b>none yet</b>');
    expect(first.headers['cache-control']).toBe('private');
    expect(first.setCookies).toHaveLength(1);
    await jar.request(`${example.url}/?color=teal`);
    expect((await jar.request(`${example.url}/`)).body).toContain('Your colour: <b>teal</b>');
    expect((await send(`${example.url}/`)).body).toContain('Your colour: <b>none yet</b>');
    expect(await example.stop()).toBe(0);
  });
});

describe.each(['express.ts', 'fastify.ts', 'hono.ts'])('examples/%s', (file) => {
  it('leaves a page that never asks for the visitor cacheable', async () => {
    const example = await start(file);
    const about = await send(`${example.url}/about`);
    expect(about.status).toBe(200);
    expect(about.setCookies).toEqual([]);
    expect(about.headers['cache-control']).toBe('public, max-age=300');
    expect(await example.stop()).toBe(0);
  });

  it('remembers a colour per visitor and stops cleanly on SIGINT', async () => {
    const example = await start(file);
    const jar = createCookieJar();
    const chosen = await jar.request(`${example.url}/?color=teal`);
    expect(chosen.status).toBe(200);
    expect(chosen.headers['cache-control']).toBe('private');
    expect(chosen.json()).toMatchObject({ source: 'new', color: 'teal' });
    const again = await jar.request(`${example.url}/`);
    expect(again.json()).toMatchObject({ source: 'cookie', confidence: 'high', color: 'teal' });
    expect(again.setCookies).toEqual([]);
    expect((await send(`${example.url}/`)).json()).toMatchObject({ source: 'new', color: null });
    expect(await example.stop()).toBe(0);
  });
});

describe('examples/custom-resolver.ts', () => {
  const APP_KEY = 'device-app-key-for-the-smoke-test';
  const signed = (deviceId: string) =>
    `${deviceId}.${createHmac('sha256', APP_KEY).update(deviceId).digest('base64url')}`;

  it('recognises a device by a valid X-Device-Id without any cookie, and ignores a forged one', async () => {
    const example = await start('custom-resolver.ts', { DEVICE_APP_KEY: APP_KEY });
    const device = { 'x-device-id': signed('phone-0123456789') };
    const first = (await send(`${example.url}/`, { headers: device })).json();
    expect(first).toMatchObject({ source: 'device', confidence: 'high', visits: 1 });
    const second = (await send(`${example.url}/`, { headers: device })).json();
    expect(second).toMatchObject({ visitor: first.visitor, source: 'device', visits: 2 });

    const forgedHeader = `phone-0123456789.${signed('phone-9999999999').split('.')[1]}`;
    const forged = await send(`${example.url}/`, { headers: { 'x-device-id': forgedHeader } });
    expect(forged.status).toBe(200);
    expect(forged.json()).toMatchObject({ source: 'new', visits: 1 });
    expect(forged.json().visitor).not.toBe(first.visitor);
    expect(await example.stop()).toBe(0);
  });
});
