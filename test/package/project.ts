// A project outside the repository, made as a new user makes one, with the package installed
// from the tarball `npm pack` writes: what users install, not the sources.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** What a finished command printed. */
export interface Ran {
  readonly code: number | null;
  readonly output: string;
}

/**
 * Runs a command to its end with no terminal attached, as CI does, and rejects with what it
 * printed when it fails. `npm_config_yes=false` makes `npx` refuse, rather than stop to ask,
 * when a program is not installed.
 */
export function run(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd,
      env: { ...process.env, npm_config_yes: 'false', npm_config_fund: 'false', npm_config_audit: 'false', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0
        ? resolve({ code, output })
        : reject(new Error(`${command} ${args.join(' ')} exited ${code}:\n${output}`)),
    );
  });
}

/** Runs a shell line (`npm init -y && npm pkg set type=module`) in `cwd`. */
export const sh = (line: string, cwd: string) => run('sh', ['-c', line], cwd);

/**
 * The package as `npm pack` writes it. `.ci/run` packs once and names the file in
 * VISITOR_STATE_TARBALL; otherwise it is packed (and built) here, into `dir`.
 */
export async function tarball(dir: string): Promise<string> {
  const given = process.env.VISITOR_STATE_TARBALL;
  if (given) return given;
  const { output } = await run('npm', ['pack', '--json', '--pack-destination', dir], ROOT);
  // The build's own output comes first; the JSON report is the last thing printed.
  const [report] = JSON.parse(output.slice(output.lastIndexOf('\n[') + 1)) as [{ filename: string }];
  return join(dir, report.filename);
}

/** A fresh folder under the system's temporary folder, outside the repository and its node_modules. */
export async function tempFolder(prefix: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** A long-running program (a server) and everything it printed so far. */
export interface Program {
  readonly child: ChildProcess;
  output(): string;
  /** SIGTERM, then SIGKILL a second later; resolves once it has exited. */
  stop(): Promise<void>;
}

export function start(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Program {
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, npm_config_yes: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: `npx` runs the program as a child of its own, and both must stop.
    detached: true,
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  return {
    child,
    output: () => output,
    stop: () =>
      child.exitCode !== null || child.signalCode !== null
        ? Promise.resolve()
        : new Promise((resolve) => {
            const signal = (name: NodeJS.Signals) => {
              try {
                process.kill(-(child.pid as number), name);
              } catch (error) {
                // The group has already gone.
                if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
              }
            };
            const force = setTimeout(() => signal('SIGKILL'), 1_000);
            child.once('exit', () => {
              clearTimeout(force);
              signal('SIGKILL'); // whatever npx left behind
              resolve();
            });
            signal('SIGTERM');
          }),
  };
}
