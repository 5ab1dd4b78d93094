import { type ParseArgsConfig, parseArgs } from 'node:util';

/** A command line that cannot run as given: exit status 2, the message and a pointer to `--help`. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

const STORE = '  --store URL          the store: sqlite://./data/vs.sqlite, redis://host:6379, postgres://…';
const NAMESPACE = '  --namespace NS       the namespace the application uses (default: vs)';

/** The help of the command and of each subcommand, printed by `--help`. */
export const HELP: Readonly<Record<string, string>> = {
  '': `Usage: visitor-state <command> [options]

Commands:
  stats    --store URL [--namespace NS] [--json]      visitors, bins and bytes held
  migrate  --from URL --to URL [--namespace NS] [--to-namespace NS]
                                                      copy every bin, with its remaining lifetime
  export   --store URL [--namespace NS] --visitor ID  a visitor's bins as JSON
  forget   --store URL [--namespace NS] (--visitor ID | --user USER_ID)
                                                      erase a visitor's bins and links
  sweep    --store URL [--namespace NS]               remove expired entries

Run 'visitor-state <command> --help' for a command's options.
Exit status: 0 success, 1 failure, 2 usage error.
Environment: VISITOR_STATE_SECRET (forget --user), VISITOR_STATE_TIMEOUT (one store call, default 10s).`,
  stats: `Usage: visitor-state stats --store URL [--namespace NS] [--json]

Counts the visitors, the bins and the bytes of JSON the store holds in the namespace.

${STORE}
${NAMESPACE}
  --json               print {"visitors": n, "bins": n, "bytes": n}`,
  migrate: `Usage: visitor-state migrate --from URL --to URL [--namespace NS] [--to-namespace NS]

Copies every bin of every visitor, links included, from one store to another, each with
the lifetime it has left. Safe while the application serves: a bin already in the target
(written there meanwhile) is kept, not overwritten. Run it again to resume: what has
arrived is skipped. The source is left as it is.

  --from URL           the store to copy from
  --to URL             the store to copy to
${NAMESPACE}
  --to-namespace NS    the namespace in the target (default: the same as --namespace)`,
  export: `Usage: visitor-state export --store URL [--namespace NS] --visitor ID

Prints the visitor's bins, with their data and expiry, as JSON (a subject access request).

${STORE}
${NAMESPACE}
  --visitor ID         the visitor ID`,
  forget: `Usage: visitor-state forget --store URL [--namespace NS] (--visitor ID | --user USER_ID)

Erases every bin of the visitor and the links that point at it, as visitor.forget() does.
With --user, the visitor is found through the user's link, which needs the application's
secret in VISITOR_STATE_SECRET.

${STORE}
${NAMESPACE}
  --visitor ID         the visitor ID
  --user USER_ID       the user ID the application linked with visitor.link()`,
  sweep: `Usage: visitor-state sweep --store URL [--namespace NS]

Removes expired entries from a store without native expiry (SQLite, PostgreSQL, memory)
and prints how many it removed.

${STORE}
${NAMESPACE}`,
};

type Options = NonNullable<ParseArgsConfig['options']>;

const string = { type: 'string' } as const;

/** The options of each command, for `parseArgs`. */
export const OPTIONS = {
  stats: { store: string, namespace: string, json: { type: 'boolean' } },
  migrate: { from: string, to: string, namespace: string, 'to-namespace': string },
  export: { store: string, namespace: string, visitor: string },
  forget: { store: string, namespace: string, visitor: string, user: string },
  sweep: { store: string, namespace: string },
} as const satisfies Record<string, Options>;

export type Command = keyof typeof OPTIONS;

export const isCommand = (name: string | undefined): name is Command =>
  name !== undefined && Object.hasOwn(OPTIONS, name);

/** What `parseArgs` found for a command's options. */
export type ValuesOf<C extends Command> = {
  [K in keyof (typeof OPTIONS)[C]]?: (typeof OPTIONS)[C][K] extends { type: 'boolean' } ? boolean : string;
};

/**
 * `--visitor -Qx…` as an option and its value, passed on as `--visitor=-Qx…`: a visitor ID is
 * base64url, one in 64 starts with `-`, and parseArgs takes such a word for an option. A word
 * that names an option of the command stays an option.
 */
function keepDashValues(options: Options, args: readonly string[]): string[] {
  const isOption = (word: string) => word.startsWith('--') && Object.hasOwn(options, word.slice(2).split('=')[0] ?? '');
  const kept: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const word = args[i] as string;
    const next = args[i + 1];
    const takesValue = isOption(word) && !word.includes('=') && options[word.slice(2)]?.type === 'string';
    if (takesValue && next?.startsWith('-') && !isOption(next)) {
      kept.push(`${word}=${next}`);
      i++;
    } else kept.push(word);
  }
  return kept;
}

/** The command's options, or a {@link UsageError} that says what is wrong. */
export function parseOptions<C extends Command>(command: C, args: readonly string[]): ValuesOf<C> {
  const options: Options = OPTIONS[command];
  try {
    const { values } = parseArgs({
      args: keepDashValues(options, args),
      options,
      strict: true,
      allowPositionals: false,
    });
    return values as ValuesOf<C>;
  } catch (error) {
    const code = (error as { code?: string }).code;
    // One line: some of parseArgs' messages take three.
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))
      throw new UsageError((error as Error).message.replace(/\s*\n\s*/g, ' '));
    throw error;
  }
}

/** The value of a required option. */
export function required(value: string | undefined, option: string, command: Command): string {
  if (value === undefined || value === '') throw new UsageError(`${command} needs --${option}`);
  return value;
}

const NAMESPACE_RULE = /^[A-Za-z0-9_.-]{1,64}$/;

/** A namespace as the library accepts it. */
export function namespaceOf(value: string | undefined, option = 'namespace'): string {
  const namespace = value ?? 'vs';
  if (!NAMESPACE_RULE.test(namespace))
    throw new UsageError(`--${option} must be 1 to 64 characters of A-Z a-z 0-9 _ . -`);
  return namespace;
}
