#!/usr/bin/env bash
# visitor-state where users deploy it besides Node: Bun, Deno and Cloudflare Workers (workerd,
# through Miniflare). The library is packed (`npm pack` builds it) and installed from the tarball
# into an application of its own, with the runtimes, all from the npm registry, in a temporary
# prefix. Then, each counted:
#   - test/runtimes/runtimes.spec.ts (on Node): the Fetch and Hono quick starts served by Bun and
#     by Deno; a Worker bundled with esbuild (workerd condition) and run by Miniflare with
#     nodejs_compat, over the memory store and over Workers KV through unstorage;
#   - the adapter suite and the storage suites (memory, SQLite, Redis, PostgreSQL, Keyv, unstorage:
#     the Redis and PostgreSQL of .ci/run), run by vitest inside Bun and inside Deno.
# Closing line: `runtimes: N passed, N failed`; exit status 1 when any failed or did not run.
#
#   scripts/ci-runtimes.sh                  the checks above
#   scripts/ci-runtimes.sh --totals FILE    the same, and one line per run appended to FILE,
#                                           `<runtime>|<passed>|<failed>|<skipped>|ok` (or `failed`)
#   scripts/ci-runtimes.sh bench            `npm run bench -- identity storage` on Node, then on Bun
# A tarball named by VISITOR_STATE_TARBALL is used as it is; else the library is packed here.
set -euo pipefail
cd "$(dirname "$0")/.."

BUN=bun@1.4.5
DENO=deno@2.9.6
MINIFLARE=miniflare@4
ESBUILD=esbuild@0.28
work="$(mktemp -d "${TMPDIR:-/tmp}/visitor-state-runtimes.XXXXXX")"
trap 'rm -rf "$work"' EXIT
app="$work/app"
mkdir -p "$app"
started=$SECONDS

install() {
  printf '{ "name": "visitor-state-runtimes", "private": true, "type": "module" }\n' >"$app/package.json"
  (cd "$app" && npm install --no-audit --no-fund --loglevel=error "$@" >/dev/null)
}

if [ "${1:-}" = bench ]; then
  echo "== installing $BUN"
  install "$BUN"
  echo "== npm run bench -- identity storage, on Node $(node --version)"
  npm run bench -- identity storage
  echo "== the same on Bun $("$app/node_modules/.bin/bun" --version)"
  "$app/node_modules/.bin/bun" bench/run.ts identity storage
  exit 0
fi

totals=/dev/null
[ "${1:-}" = --totals ] && totals="$2"

echo "== Bun, Deno, Cloudflare Workers: installing the library with $BUN $DENO $MINIFLARE $ESBUILD"
tarball="${VISITOR_STATE_TARBALL:-}"
if [ -z "$tarball" ]; then
  npm pack --silent --pack-destination "$work" >/dev/null
  tarball="$(ls "$work"/visitor-state-*.tgz)"
fi
cp test/runtimes/*.mjs "$app/"
install "$tarball" "$BUN" "$DENO" "$MINIFLARE" "$ESBUILD" unstorage@~1.17.6 hono@^4
bun_version="$("$app/node_modules/.bin/bun" --version)"
deno_version="$("$app/node_modules/.bin/deno" --version | head -1 | cut -d' ' -f2)"
miniflare_version="$(node -p "require('$app/node_modules/miniflare/package.json').version")"
echo "   bun $bun_version, deno $deno_version, miniflare $miniflare_version"

status=0
echo "== quick starts on Bun and Deno, a Worker in workerd"
VISITOR_STATE_RUNTIMES_APP="$app" npx vitest run --config test/runtimes/vitest.config.ts \
  --reporter=default --reporter=json --outputFile="$work/node.json" || status=1

# On Bun, Response.redirect() has mutable headers, so apply() rightly changes it in place: the
# Node-only expectation of a copy is left out there.
suite=(./node_modules/vitest/vitest.mjs run test/adapters/adapters.test.ts test/state/storages.test.ts
  test/state/unstorage-storage.test.ts test/state/load-peer.test.ts)
echo "== the adapter and storage suites inside Bun"
"$app/node_modules/.bin/bun" --bun "${suite[@]}" -t '^(?!.*applies the headers to a copy of a response)' \
  --reporter=default --reporter=json --outputFile="$work/bun.json" || status=1
echo "== the adapter and storage suites inside Deno"
"$app/node_modules/.bin/deno" run --allow-all "${suite[@]}" \
  --reporter=default --reporter=json --outputFile="$work/deno.json" || status=1

ELAPSED=$((SECONDS - started)) node -e '
  const { appendFileSync, existsSync, readFileSync } = require("node:fs");
  const [totals, ...runs] = process.argv.slice(1);
  let passed = 0, failed = 0;
  for (const run of runs) {
    const [name, file] = run.split("=");
    const r = existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : undefined;
    const ok = r !== undefined && r.numTotalTests > 0 && r.numFailedTests === 0 && r.success !== false;
    const counts = [r?.numPassedTests ?? 0, r ? r.numFailedTests : 1, r ? r.numPendingTests + r.numTodoTests : 0];
    if (!r) console.log(`${name}: no report`);
    passed += counts[0];
    failed += counts[1] + (ok || counts[1] > 0 ? 0 : 1);
    appendFileSync(totals, `${name}|${counts.join("|")}|${ok ? "ok" : "failed"}\n`);
  }
  console.log(`(${process.env.ELAPSED} s)`);
  console.log(`runtimes: ${passed} passed, ${failed} failed`);
  if (failed > 0) process.exit(1);
' "$totals" \
  "Bun $bun_version and Deno $deno_version quick starts, workerd (Miniflare $miniflare_version)=$work/node.json" \
  "Bun $bun_version: adapter and storage suites=$work/bun.json" \
  "Deno $deno_version: adapter and storage suites=$work/deno.json" || status=1
exit "$status"
