import { Bench } from 'tinybench';

/** One thing to time. */
export interface Case {
  /** What is measured, as printed. */
  readonly label: string;
  /** Performs `ops` operations; awaited when it returns a promise. */
  readonly run: () => unknown;
  /**
   * How many operations one call of `run` performs: several per call keep the timer's own
   * cost out of sub-microsecond figures.
   * @default 1
   */
  readonly ops?: number;
}

/** What a {@link Case} measured. */
export interface Figure {
  readonly label: string;
  /**
   * Mean time of one operation, in nanoseconds: a mean, not a median, so that the garbage
   * collection a case causes counts against it.
   */
  readonly nsPerOp: number;
  /** Operations per second: the inverse of `nsPerOp`. */
  readonly opsPerSecond: number;
}

/** Options of {@link measure}. */
export interface MeasureOptions {
  /**
   * How long each case runs in all, in milliseconds.
   * @default 700
   */
  timeMs?: number;
  /**
   * How long each case runs first, unmeasured, in milliseconds.
   * @default 150
   */
  warmupMs?: number;
  /**
   * In how many rounds the cases take turns, so that a change of load on a shared machine
   * falls on a figure and its baseline alike; each figure is the median of its rounds.
   * @default 5
   */
  rounds?: number;
}

/** A target on the ratio of a figure to its baseline. */
export type Target = { readonly atMost: number } | { readonly atLeast: number } | { readonly fasterBy: number };

/** Options of {@link compare}. */
export interface CompareOptions {
  /**
   * `'time'` prints times per operation and the ratio of times; `'rate'` prints operations per
   * second and the ratio of rates.
   * @default 'time'
   */
  by?: 'time' | 'rate';
  /** @default none */
  target?: Target;
  /**
   * The ratio to print and judge, when the caller has a better one than the ratio of the two
   * figures: the median of paired rounds' ratios, say.
   * @default the figure's rate or time over the baseline's
   */
  ratio?: number;
}

// Assigned by the benches so that no measured result is dead code.
export const sink: { value: unknown } = { value: undefined };

const missed: string[] = [];
let met = 0;

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/**
 * Times the cases in one process, taking turns round by round, so that every figure has its
 * baselines from the same run and the same moments.
 *
 * @example
 * ```ts
 * const [ours, map] = await measure([
 *   { label: 'storage get', run: () => storage.get('v', 'b') },
 *   { label: 'Map.get', run: () => map.get('v/b') },
 * ]);
 * ```
 */
export async function measure(cases: readonly Case[], options: MeasureOptions = {}): Promise<Figure[]> {
  const rounds = options.rounds ?? 5;
  const nsPerOp = cases.map((): number[] => []);
  for (let round = 0; round < rounds; round++) {
    const bench = new Bench({
      time: (options.timeMs ?? 700) / rounds,
      warmup: round === 0,
      warmupTime: options.warmupMs ?? 150,
      warmupIterations: 5,
      iterations: 5,
      throws: true,
    });
    for (const c of cases) bench.add(c.label, c.run);
    await bench.run();
    for (const [i, c] of cases.entries()) {
      const latency = bench.tasks[i]?.result?.latency;
      if (!latency?.mean) throw new Error(`${c.label} produced no samples`);
      nsPerOp[i]?.push((latency.mean * 1e6) / (c.ops ?? 1));
    }
  }
  return cases.map((c, i) => {
    const ns = median(nsPerOp[i] ?? []);
    return { label: c.label, nsPerOp: ns, opsPerSecond: 1e9 / ns };
  });
}

const formatTime = (ns: number): string => {
  if (ns >= 1e7) return `${(ns / 1e6).toPrecision(3)} ms`;
  const us = ns / 1e3;
  return `${us >= 100 ? us.toFixed(0) : us.toPrecision(us < 0.1 ? 2 : 3)} µs`;
};

const formatRate = (perSecond: number): string => {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toPrecision(3)}M ops/s`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toPrecision(3)}k ops/s`;
  return `${perSecond.toPrecision(3)} ops/s`;
};

const formatRatio = (ratio: number): string => `${ratio >= 100 ? ratio.toFixed(0) : ratio.toPrecision(3)}x`;

const verdict = (what: string, target: Target, ratio: number): string => {
  let text: string;
  let ok: boolean;
  if ('atMost' in target) {
    text = `≤ ${target.atMost}x`;
    ok = ratio <= target.atMost;
  } else if ('atLeast' in target) {
    text = `≥ ${target.atLeast}x`;
    ok = ratio >= target.atLeast;
  } else {
    text = `≥ ${target.fasterBy}x faster`;
    ok = 1 / ratio >= target.fasterBy;
  }
  if (ok) met++;
  else missed.push(`${what} (target ${text}, got ${formatRatio(ratio)} the baseline)`);
  return `(target ${text}: ${ok ? 'met' : 'MISSED'})`;
};

/**
 * Prints one line: a figure, its baseline from the same run, their ratio and, when given,
 * whether the target was met (misses are listed again by {@link summary}).
 *
 * @example
 * ```ts
 * compare(ours, map, { target: { atMost: 3 } });
 * // storage get   0.21 µs   baseline Map.get 0.08 µs   2.63x the baseline   (target ≤ 3x: met)
 * ```
 */
export function compare(figure: Figure, baseline: Figure, options: CompareOptions = {}): void {
  const byRate = options.by === 'rate';
  const show = (f: Figure) => (byRate ? formatRate(f.opsPerSecond) : formatTime(f.nsPerOp));
  const ratio =
    options.ratio ?? (byRate ? figure.opsPerSecond / baseline.opsPerSecond : figure.nsPerOp / baseline.nsPerOp);
  const faster = !byRate && ratio < 1 ? ` (${formatRatio(1 / ratio)} faster)` : '';
  const parts = [
    figure.label.padEnd(50),
    show(figure).padStart(13),
    `   baseline ${baseline.label}`.padEnd(60),
    show(baseline).padStart(13),
    `   ${formatRatio(ratio)} the baseline${faster}`,
  ];
  if (options.target) parts.push(`   ${verdict(figure.label, options.target, ratio)}`);
  console.log(parts.join(''));
}

/**
 * Prints a result that is a count rather than a time, and whether it met its target.
 *
 * @example
 * ```ts
 * check('redis bin cache getMany', '5 bins in 1 round trip(s)', 'target 1', trips === 1);
 * ```
 */
export function check(what: string, result: string, target: string, ok: boolean): void {
  if (ok) met++;
  else missed.push(`${what}: ${result} (${target})`);
  console.log(`${what.padEnd(50)}${result}   (${target}: ${ok ? 'met' : 'MISSED'})`);
}

/**
 * Prints the title of a group of lines.
 *
 * @example
 * ```ts
 * heading('memory storage');
 * ```
 */
export function heading(title: string): void {
  console.log(`\n== ${title} ==`);
}

/**
 * Prints why a part did not run.
 *
 * @example
 * ```ts
 * skip('Redis storage', 'nothing listens on redis://127.0.0.1:6379');
 * ```
 */
export function skip(part: string, reason: string): void {
  console.log(`\n== ${part} ==\nskipped: ${reason}`);
}

/**
 * Prints how many targets were met and lists the missed ones.
 *
 * @example
 * ```ts
 * summary('storage');
 * ```
 */
export function summary(file: string): void {
  console.log(`\n${file}: ${met} target(s) met, ${missed.length} missed`);
  for (const line of missed) console.log(`  missed: ${line}`);
}
