import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { NodeLikeResponse } from '../src/index.js';

/** The environment variable through which `bench/run.ts` names the compiled build to measure. */
export const LIBRARY_ENV = 'VISITOR_STATE_BENCH_LIB';

const built = process.env[LIBRARY_ENV];

/**
 * Loads a module of the library: from the compiled build when `bench/run.ts` made one (what
 * users run), else from `src/` through tsx, whose keep-names wrapper adds a call to every
 * closure a request creates.
 *
 * @example
 * ```ts
 * const { createVisitorState } = await load<typeof import('../src/index.js')>('index');
 * ```
 */
export async function load<T>(module: string): Promise<T> {
  const url = built
    ? pathToFileURL(join(built, `${module}.js`)).href
    : new URL(`../src/${module}.js`, import.meta.url).href;
  return (await import(url)) as T;
}

/**
 * Says which code the figures are of.
 *
 * @example
 * ```ts
 * console.log(measuredCode());
 * ```
 */
export function measuredCode(): string {
  return built
    ? 'measuring the compiled build (tsc, as published)'
    : 'measuring src/ through tsx (run `npm run bench` to measure the compiled build instead)';
}

/** A node:http-like response that only records its headers, for benches without a socket. */
export interface FakeResponse extends NodeLikeResponse {
  readonly headers: Map<string, number | string | readonly string[]>;
}

export function fakeResponse(): FakeResponse {
  const headers = new Map<string, number | string | readonly string[]>();
  return {
    headersSent: false,
    headers,
    getHeader: (name) => headers.get(name) as number | string | string[] | undefined,
    setHeader: (name, value) => headers.set(name, value),
  };
}
