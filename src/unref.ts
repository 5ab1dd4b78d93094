/**
 * Lets a background timer run without keeping the process alive, where a timer can do that
 * (Node, Bun, Deno). In workerd and in browsers `setTimeout` and `setInterval` return a
 * number, which has no `unref()`: calling it there would throw on the request path.
 *
 * @example
 * ```ts
 * const ticker = unref(setInterval(tick, 1_000));
 * ```
 */
export function unref<T>(timer: T): T {
  (timer as { unref?: () => unknown }).unref?.();
  return timer;
}
