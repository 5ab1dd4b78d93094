#!/usr/bin/env node
import { processIo } from './io.js';
import { oneLine } from './message.js';
import { run } from './run.js';

// `npx visitor-state <command>`: runs the command, then exits with its status even when a store
// driver keeps a socket or a reconnect timer alive (a hung store must not hold the command).
const io = processIo();
process.on('unhandledRejection', (error) => {
  // A driver failing outside any call (e.g. a socket closing late) ends the command with one line, not a stack.
  io.err(`visitor-state: ${oneLine(error)}`);
  process.exit(1);
});
const status = await run(process.argv.slice(2), io);
process.exitCode = status;
// Output to pipes and files is written synchronously on Linux and macOS; wait for a terminal's to drain.
process.stdout.write('', () => process.stderr.write('', () => process.exit(status)));
