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
#   scripts/ci-runtimes.sh          the checks above
#   scripts/ci-runtimes.sh bench    `npm run bench -- identity storage` on Node, then on Bun
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

echo "== packing the library, installing it with $BUN $DENO $MINIFLARE $ESBUILD"
npm pack --silent --pack-destination "$work" >/dev/null
cp test/runtimes/*.mjs "$app/"
install "$work"/visitor-state-*.tgz "$BUN" "$DENO" "$MINIFLARE" "$ESBUILD" unstorage@~1.17.6 hono@^4
echo "   bun $("$app/node_modules/.bin/bun" --version), $("$app/node_modules/.bin/deno" --version | head -1)"

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
  const { existsSync, readFileSync } = require("node:fs");
  let passed = 0, failed = 0;
  for (const file of process.argv.slice(1)) {
    if (!existsSync(file)) { console.log(`no report from ${file}`); failed++; continue; }
    const r = JSON.parse(readFileSync(file, "utf8"));
    passed += r.numPassedTests;
    failed += r.numFailedTests + (r.numTotalTests === 0 ? 1 : 0);
  }
  console.log(`(${process.env.ELAPSED} s)`);
  console.log(`runtimes: ${passed} passed, ${failed} failed`);
  if (failed > 0) process.exit(1);
' "$work/node.json" "$work/bun.json" "$work/deno.json" || status=1
exit "$status"
