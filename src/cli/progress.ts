import cliProgress from 'cli-progress';
import type { CliIo } from './io.js';

/** Counts a long command reports as it goes. */
export interface Counts {
  readonly visitors: number;
  readonly moved: number;
  readonly skipped: number;
  readonly failed: number;
}

export interface Progress {
  update(counts: Counts): void;
  stop(): void;
}

/** How often plain progress lines are printed when standard error is not a terminal: whichever comes first. */
const LINE_EVERY_MS = 5_000;
const LINE_EVERY_VISITORS = 1_000;

/**
 * A progress bar with counts and rate on a terminal; without one (a log file, CI), a plain
 * line every 1,000 visitors or five seconds, so a log shows how far it got without a line per visitor.
 */
export function progress(io: CliIo, total: number | undefined, now: () => number = Date.now): Progress {
  const started = now();
  const rate = (counts: Counts) => {
    const seconds = (now() - started) / 1000;
    return seconds > 0 ? Math.round((counts.moved + counts.skipped + counts.failed) / seconds) : 0;
  };
  if (io.interactive && total !== undefined) {
    const bar = new cliProgress.SingleBar(
      {
        stream: io.errStream,
        format:
          'migrate [{bar}] {percentage}% | {value}/{total} visitors | {moved} moved, {skipped} skipped, {failed} failed | {rate} bins/s | ETA {eta_formatted}',
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { moved: 0, skipped: 0, failed: 0, rate: 0 });
    return {
      update: (counts) => bar.update(counts.visitors, { ...counts, rate: rate(counts) }),
      stop: () => bar.stop(),
    };
  }
  let last = started;
  let lastVisitors = 0;
  return {
    update(counts) {
      if (counts.visitors - lastVisitors < LINE_EVERY_VISITORS && now() - last < LINE_EVERY_MS) return;
      last = now();
      lastVisitors = counts.visitors;
      io.err(
        `migrate: ${counts.visitors}${total === undefined ? '' : `/${total}`} visitors, ${counts.moved} moved, ${counts.skipped} skipped, ${counts.failed} failed, ${rate(counts)} bins/s`,
      );
    },
    stop() {},
  };
}
