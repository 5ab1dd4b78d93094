import { ConfigError } from './errors.js';

/** A lifetime: milliseconds, or a number with a unit such as `'90s'`, `'90m'`, `'12h'`, `'30d'`. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h' | 'd'}`;

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/**
 * Turns a {@link Duration} into milliseconds; `what` names the option in the error.
 *
 * @example
 * ```ts
 * toMs('30d', 'ttl'); // 2_592_000_000
 * ```
 */
export function toMs(value: Duration, what: string): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value > 0) return value;
  } else {
    const match = DURATION.exec(value);
    if (match) {
      const ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
      if (ms > 0) return ms;
    }
  }
  throw new ConfigError(
    `${what} must be a positive number of milliseconds or a string such as '90m', '12h' or '30d'; got ${JSON.stringify(value)}`,
  );
}
