/** A map bounded to about its most recently used entries; made by {@link recentMap}. */
export interface RecentMap<K, V> {
  get(key: K): V | undefined;
  set(key: K, value: V): void;
}

/**
 * A map that keeps at most `max` entries, favouring the recently used: two generations of
 * plain Maps, the older one dropped whole when the newer one fills, and a hit in the older one
 * moved to the newer. A hit costs one or two `Map.get`s, less than a true LRU's bookkeeping,
 * which suits a cache read on every request (verified cookies, parsed user agents).
 *
 * @example
 * ```ts
 * const verified = recentMap<string, Reading>(10_000);
 * verified.set(cookie, reading);
 * verified.get(cookie); // reading, until some 5,000 to 10,000 other cookies have come by
 * ```
 */
export function recentMap<K, V>(max: number): RecentMap<K, V> {
  const half = Math.max(1, Math.ceil(max / 2));
  let young = new Map<K, V>();
  let old = new Map<K, V>();

  const set = (key: K, value: V) => {
    if (young.size >= half) {
      old = young;
      young = new Map();
    }
    young.set(key, value);
  };

  return {
    get(key) {
      const value = young.get(key);
      if (value !== undefined) return value;
      const older = old.get(key);
      if (older !== undefined) set(key, older);
      return older;
    },
    set,
  };
}
