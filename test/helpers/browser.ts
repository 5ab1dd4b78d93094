import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { need } from './services.js';

export const CHROMIUM = '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Whether Debian's Chromium is there; skips the file with a printed reason otherwise (fails under CI=true). */
export const needChromium = () =>
  need('Chromium', () => existsSync(CHROMIUM), 'install it with: apt-get install -y chromium');

/** Headless Debian Chromium, driven by playwright-core (which brings no browser of its own). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30_000 });
}

/**
 * Runs `steps` on a page; when they fail, saves a screenshot as `<dir>/<name>.png`, prints
 * its path, and rethrows.
 */
export async function screenshotOnFailure<T>(
  page: Page,
  dir: string,
  name: string,
  steps: () => Promise<T>,
): Promise<T> {
  try {
    return await steps();
  } catch (error) {
    const path = join(dir, `${name.replace(/[^A-Za-z0-9_-]+/g, '-')}.png`);
    await page.screenshot({ path, fullPage: true }).then(
      () => console.error(`screenshot of the failing page: ${path}`),
      (shotError: Error) => console.error(`no screenshot of the failing page: ${shotError.message}`),
    );
    throw error;
  }
}
