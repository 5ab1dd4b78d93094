/** Where a command writes: its result on `out`, progress and messages on `err`. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** Whether `err` is a terminal, where a progress bar can redraw itself. */
  readonly interactive: boolean;
  readonly env: NodeJS.ProcessEnv;
  /** The stream a progress bar draws on. */
  readonly errStream: NodeJS.WritableStream;
}

/** The process's own standard output and error. */
export const processIo = (): CliIo => ({
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
  interactive: process.stderr.isTTY === true,
  env: process.env,
  errStream: process.stderr,
});
