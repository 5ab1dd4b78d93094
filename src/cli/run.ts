import { createRequire } from 'node:module';
import { exportVisitor } from './export.js';
import { forget } from './forget.js';
import type { CliIo } from './io.js';
import { oneLine } from './message.js';
import { migrate } from './migrate.js';
import { stats } from './stats.js';
import { type CliStore, callTimeoutMs, openCliStore } from './store.js';
import { sweep } from './sweep.js';
import { type Command, HELP, isCommand, namespaceOf, parseOptions, required, UsageError } from './usage.js';

/**
 * Runs one command line and resolves to its exit status: 0 success, 1 failure, 2 usage error.
 * A failure is one line on standard error, never a stack trace (set VISITOR_STATE_DEBUG=1 for one).
 *
 * @example
 * ```ts
 * process.exitCode = await run(['stats', '--store', 'sqlite://./data/vs.sqlite', '--json'], processIo());
 * ```
 */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    io.err('visitor-state: name a command: stats, migrate, export, forget or sweep (see visitor-state --help)');
    return 2;
  }
  if (first === '--help' || first === '-h' || first === 'help') {
    io.out(HELP[first === 'help' && isCommand(rest[0]) ? rest[0] : ''] as string);
    return 0;
  }
  if (first === '--version' || first === '-v') {
    io.out(String(createRequire(import.meta.url)('../../package.json').version));
    return 0;
  }
  if (!isCommand(first)) {
    io.err(`visitor-state: unknown command '${first}'; use stats, migrate, export, forget or sweep (see --help)`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(HELP[first] as string);
    return 0;
  }
  const opened: CliStore[] = [];
  try {
    return await runCommand(first, rest, io, opened);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`visitor-state: ${error.message} (see visitor-state ${first} --help)`);
      return 2;
    }
    io.err(`visitor-state: ${oneLine(error)}`);
    if (io.env.VISITOR_STATE_DEBUG) io.err(String((error as Error)?.stack));
    return 1;
  } finally {
    await Promise.all(opened.map((store) => store.close()));
  }
}

async function runCommand(command: Command, args: readonly string[], io: CliIo, opened: CliStore[]): Promise<number> {
  const timeoutMs = callTimeoutMs(io.env);
  const open = async (url: string, namespace: string) => {
    const store = await openCliStore(url, namespace, timeoutMs);
    opened.push(store);
    return store;
  };
  switch (command) {
    case 'stats': {
      const o = parseOptions('stats', args);
      return stats(await open(required(o.store, 'store', command), namespaceOf(o.namespace)), o.json === true, io);
    }
    case 'migrate': {
      const o = parseOptions('migrate', args);
      const from = required(o.from, 'from', command);
      const to = required(o.to, 'to', command);
      const namespace = namespaceOf(o.namespace);
      const toNamespace = namespaceOf(o['to-namespace'] ?? namespace, 'to-namespace');
      if (from === to && namespace === toNamespace)
        throw new UsageError('--from and --to name the same store and namespace; give another --to or --to-namespace');
      return migrate(await open(from, namespace), await open(to, toNamespace), io);
    }
    case 'export': {
      const o = parseOptions('export', args);
      const visitor = required(o.visitor, 'visitor', command);
      return exportVisitor(await open(required(o.store, 'store', command), namespaceOf(o.namespace)), visitor, io);
    }
    case 'forget': {
      const o = parseOptions('forget', args);
      const store = required(o.store, 'store', command);
      if ((o.visitor === undefined) === (o.user === undefined))
        throw new UsageError('forget needs either --visitor ID or --user USER_ID');
      if (o.user !== undefined && !io.env.VISITOR_STATE_SECRET)
        throw new UsageError(
          "forget --user needs VISITOR_STATE_SECRET, the application's secret, to find the user's link",
        );
      return forget(await open(store, namespaceOf(o.namespace)), { visitor: o.visitor, user: o.user }, io);
    }
    case 'sweep': {
      const o = parseOptions('sweep', args);
      return sweep(await open(required(o.store, 'store', command), namespaceOf(o.namespace)), io);
    }
  }
}
