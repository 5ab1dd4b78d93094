/**
 * The pause before a compare-and-set tries again after another writer got there first: random,
 * and growing with each loss up to 20 ms, so that two servers updating one bin stop retrying in
 * step. Without it, two processes hammering one counter saw one of them lose 50 times in a row
 * (on PostgreSQL, and on Redis with 4 updates in flight per process).
 */
export const pauseAfterLostRace = (losses: number): Promise<void> =>
  new Promise((done) => setTimeout(done, Math.random() * Math.min(20, 2 ** losses)));
