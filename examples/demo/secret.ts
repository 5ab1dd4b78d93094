import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The demo's secret: VISITOR_STATE_SECRET when set, else one generated on first run and kept in
 * `<dataDir>/demo-secret` (mode 0600).
 *
 * Without a secret the library warns and signs with a random one per process, so every restart
 * would turn every visitor into a new one. Keeping a generated secret next to the demo's SQLite
 * file lets visitor cookies, and the choices stored under them, survive a restart. A real
 * deployment sets VISITOR_STATE_SECRET instead (`openssl rand -base64 32`).
 */
export async function demoSecret(dataDir: string): Promise<string> {
  const fromEnv = process.env.VISITOR_STATE_SECRET;
  if (fromEnv) return fromEnv;
  const file = join(dataDir, 'demo-secret');
  await mkdir(dataDir, { recursive: true });
  try {
    // 'wx' fails when the file exists, so two demos starting at once cannot overwrite each other's secret.
    const secret = randomBytes(32).toString('base64url');
    await writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return secret;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const kept = (await readFile(file, 'utf8')).trim();
  if (kept.length < 32) throw new Error(`${file} holds no usable secret; delete it to generate a new one`);
  return kept;
}
