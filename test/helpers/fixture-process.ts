import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** A fixture running in a process of its own, as a second server would. */
export interface FixtureProcess {
  readonly child: ChildProcess;
  /** What it wrote to standard error: read for real failures. */
  readonly stderr: string[];
  readonly exit: Promise<number | null>;
}

/**
 * Starts `node --import tsx <script> ...args` from the project's root and waits until the
 * fixture prints "ready" (it has opened its store); a fixture that exits first fails the test
 * with what it wrote to standard error.
 *
 * @example
 * ```ts
 * const { child, exit } = await startFixture(updater, [store, namespace, visitorId, '1000']);
 * child.stdin?.write('go\n');
 * ```
 */
export async function startFixture(script: string, args: readonly string[]): Promise<FixtureProcess> {
  // Node 22 warns once that node:sqlite is experimental; stderr is read for real failures.
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', '--import', 'tsx', script, ...args], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  const lines = createInterface({ input: child.stdout! });
  const [line] = (await Promise.race([once(lines, 'line'), exit.then(() => [`exited: ${stderr.join('')}`])])) as [
    string,
  ];
  expect(line).toBe('ready');
  return { child, stderr, exit };
}
