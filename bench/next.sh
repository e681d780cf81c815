#!/usr/bin/env bash
# Next.js benchmark, on create-next-app's App Router template (16.4.3, pinned in the repo's
# package.json; its Google Fonts import dropped, since these machines cannot reach Google, and a
# /slow route added so requests are in flight during every reload):
#
#  1. The server under PM2's cluster mode (2 instances, kill_timeout 10000 ms): `next start`
#     against the draining `next-server.js` that `relman init` writes. For each, RELOADS
#     activations alternating between two releases, under one load run (4 keep-alive, 2 fresh,
#     1 slow worker of 800 ms); failed and retried requests, and old workers PM2 had to SIGKILL
#     at kill_timeout (from PM2's own log).
#  2. A whole `relman deploy` (build, preflight, roll, probe, prune) against what it wraps, done
#     by hand in place: `npm run build` (next build) in a checkout that already has node_modules,
#     then `pm2 reload APP`. DEPLOY_RUNS of each, interleaved; and as many cold builds
#     (`relman build --no-reuse`: no build cache) to set the `next build` step of a deploy,
#     which starts from the previous release's `.next/cache`, against.
#  3. Release size: a release as built (node_modules in it) and the same app built
#     with `output: 'standalone'` (the whole release, its node_modules, .next/standalone).
#
# usage: bench/next.sh        (RELOADS=10, DEPLOY_RUNS=3)
#        REPORT_ONLY=1 bench/next.sh   prints the report again from $TMPDIR/relman-bench-next/results/
#
# PM2 runs with its own PM2_HOME under a temp dir and is killed at the end; everything else
# lives under $TMPDIR/relman-bench-next/ (BENCH_DIR). Markdown on stdout, progress on stderr.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RELOADS=${RELOADS:-10}
DEPLOY_RUNS=${DEPLOY_RUNS:-3}
LOAD_ARGS=(--keepalive 4 --fresh 2 --slow 1 --slow-ms 800 --seconds 1800)
# Outside the repository: a lockfile in a parent directory (this repository has one) makes
# Next.js take that directory as its workspace root, and a carried build cache then misses.
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/relman-bench-next}
ROOT="$WORK/root"
APP="relman-bench-next-$$"
SERVERS="$WORK/results/servers.tsv"
DEPLOYS="$WORK/results/deploys.tsv"
SIZES="$WORK/results/sizes.tsv"
export NEXT_TELEMETRY_DISABLED=1

command -v node >/dev/null || die "node not found"
if [[ "${REPORT_ONLY:-0}" == 1 ]]; then
  [[ -f "$WORK/results/params.sh" ]] || die "no results in $WORK/results: run bench/next.sh first"
  # shellcheck source=/dev/null
  source "$WORK/results/params.sh"
else # --- the measurement, up to `fi # REPORT_ONLY` ---
build_release
ensure_pm2
[[ -x "$REPO/node_modules/.bin/create-next-app" ]] || (cd "$REPO" && npm ci --no-audit --no-fund) >&2

scratch_pm2
export PATH="$REPO/node_modules/.bin:$PATH"

PORT=$(free_port)
URL="http://127.0.0.1:$PORT/"
say "deploy root $ROOT, app $APP on port $PORT, PM2_HOME $PM2_HOME"

# --- the stock app ------------------------------------------------------------------------
SRC="$WORK/app"
stock_next_app "$SRC" "$WORK/setup.log"

"$RELMAN" --root "$ROOT" init --app "$APP" --port "$PORT" --source "$SRC" >>"$WORK/setup.log" 2>&1
# What the default (`true`) does for a user other than root, said outright: this may run as root,
# where the default copies node_modules (root writes through file modes).
sed -i 's/^\[build\]$/[build]\nreuse_node_modules = "link"/' "$ROOT/relman.toml"
grep -q '^reuse_node_modules = "link"' "$ROOT/relman.toml" || die "could not set reuse_node_modules"
say "building releases rel-a and rel-b"
"$RELMAN" --root "$ROOT" build --id rel-a >>"$WORK/build.log" 2>&1 || die "build rel-a failed: $WORK/build.log"
sed -i 's/To get started/To begin/' "$SRC/app/page.js"
"$RELMAN" --root "$ROOT" build --id rel-b >>"$WORK/build.log" 2>&1 || die "build rel-b failed: $WORK/build.log"

flip() {
  ln -sfn "releases/$1" "$ROOT/current.bench-tmp"
  mv -T "$ROOT/current.bench-tmp" "$ROOT/current"
}
wait_serving() {
  local deadline=$((SECONDS + 60))
  until curl -sf -m 2 -o /dev/null "$URL"; do
    ((SECONDS < deadline)) || die "the app never answered $URL"
    sleep 0.2
  done
}
kills() { grep -c 'still alive after' "$PM2_HOME/pm2.log" 2>/dev/null || true; }

# --- 1. next start against next-server.js -------------------------------------------------
printf 'server\treloads\tok\tfailed\tretried\tsigkilled\tactivate_rc\tfailures\n' >"$SERVERS"
cp "$ROOT/ecosystem.config.js" "$WORK/ecosystem.next-server.config.js"
cp "$ROOT/relman.toml" "$WORK/relman.next-server.toml"
sed "s|script: \".*\",|script: \"node_modules/next/dist/bin/next\", args: \"start -p $PORT\",|" \
  "$WORK/ecosystem.next-server.config.js" >"$WORK/ecosystem.next-start.config.js"
sed "s|^command = \"node .*next-server.js\"|command = \"node_modules/.bin/next start -p {port}\"|" \
  "$WORK/relman.next-server.toml" >"$WORK/relman.next-start.toml"
grep -q 'next/dist/bin/next' "$WORK/ecosystem.next-start.config.js" || die "could not make the next start ecosystem"
grep -q 'next start' "$WORK/relman.next-start.toml" || die "could not make the next start config"

for server in next-start next-server; do
  say "server $server: $RELOADS activations under load"
  pm2 delete "$APP" || true
  cp "$WORK/relman.$server.toml" "$ROOT/relman.toml"
  flip rel-a
  pm2 start "$WORK/ecosystem.$server.config.js"
  wait_serving
  sleep 2
  kills_before=$(kills)
  rm -f "$WORK/stop"
  "$LOADGEN" --addr "127.0.0.1:$PORT" "${LOAD_ARGS[@]}" --stop-file "$WORK/stop" >"$WORK/loadgen.out" &
  LOADGEN_PID=$!
  sleep 0.5
  worst=0
  for ((n = 1; n <= RELOADS; n++)); do
    if ((n % 2)); then target=rel-b; else target=rel-a; fi
    rc=0
    "$RELMAN" --root "$ROOT" activate "$target" >/dev/null 2>>"$WORK/activate.log" || rc=$?
    ((rc > worst)) && worst=$rc
    say "  $server #$n -> $target: rc $rc"
    sleep 1
  done
  sleep 2
  touch "$WORK/stop"
  wait "$LOADGEN_PID"
  LOADGEN_PID=""
  stats=$(cat "$WORK/loadgen.out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$RELOADS" \
    "$(json_get ok <<<"$stats")" "$(json_get failed <<<"$stats")" "$(json_get retried <<<"$stats")" \
    "$(($(kills) - kills_before))" "$worst" "$(json_get failures <<<"$stats")" >>"$SERVERS"
  say "  $server: $(json_get ok <<<"$stats") ok, $(json_get failed <<<"$stats") failed, $(json_get retried <<<"$stats") retried"
done
cp "$WORK/relman.next-server.toml" "$ROOT/relman.toml"

# --- 2. relman deploy against next build + pm2 reload --------------------------------------
say "deploys: relman deploy vs npm run build + pm2 reload, $DEPLOY_RUNS each, interleaved"
pm2 delete "$APP" || true
flip rel-a
pm2 start "$WORK/ecosystem.next-server.config.js"
wait_serving
# The by-hand baseline builds in place, in a checkout of its own that already has its
# node_modules (the cheapest a basic deploy gets).
INPLACE="$WORK/inplace"
cp -a "$SRC" "$INPLACE"
(cd "$INPLACE" && npm ci --no-audit --no-fund) >>"$WORK/setup.log" 2>&1
printf 'what\trun\twall_s\tbuild_s\treload_s\tnext_build_s\n' >"$DEPLOYS"
secs_of() { awk -v ms="$1" 'BEGIN { printf "%.3f", ms / 1000 }'; }
for ((i = 1; i <= DEPLOY_RUNS; i++)); do
  if ((i % 2)); then order=(relman bare cold); else order=(cold bare relman); fi
  for what in "${order[@]}"; do
    case $what in
      relman)
        start=$(now)
        out=$("$RELMAN" --root "$ROOT" --json deploy --id "deploy-$i" 2>>"$WORK/deploy.log") ||
          die "relman deploy failed: $out"
        secs=$(elapsed "$start" "$(now)")
        printf 'relman\t%s\t%s\t%s\t%s\t%s\n' "$i" "$secs" \
          "$(secs_of "$(json_get build.durations_ms.total <<<"$out")")" \
          "$(secs_of "$(json_get activate.durations_ms.total <<<"$out")")" \
          "$(secs_of "$(json_get build.durations_ms.build <<<"$out")")" >>"$DEPLOYS"
        ;;
      cold)
        out=$("$RELMAN" --root "$ROOT" --json build --no-reuse --id "cold-$i" 2>>"$WORK/deploy.log") ||
          die "relman build --no-reuse failed: $out"
        printf 'cold\t%s\t\t%s\t\t%s\n' "$i" "$(secs_of "$(json_get durations_ms.total <<<"$out")")" \
          "$(secs_of "$(json_get durations_ms.build <<<"$out")")" >>"$DEPLOYS"
        ;;
      bare)
        start=$(now)
        (cd "$INPLACE" && npm run build) >>"$WORK/inplace.log" 2>&1 || die "npm run build failed"
        mid=$(now)
        pm2 reload "$APP" || die "pm2 reload failed"
        end=$(now)
        printf 'bare\t%s\t%s\t%s\t%s\t%s\n' "$i" "$(elapsed "$start" "$end")" "$(elapsed "$start" "$mid")" \
          "$(elapsed "$mid" "$end")" "$(elapsed "$start" "$mid")" >>"$DEPLOYS"
        ;;
    esac
    wait_serving
    sleep 1
  done
  say "  deploy run $i/$DEPLOY_RUNS"
done

# --- 3. release size: node_modules copied, and output: 'standalone' --------------------------
say "sizes: a release as built, and the same app with output: 'standalone'"
SA="$WORK/app-standalone"
cp -a "$SRC" "$SA"
sed -i 's|/\* config options here \*/|output: "standalone",|' "$SA/next.config.mjs"
grep -q 'output: "standalone"' "$SA/next.config.mjs" || die "the template's next.config changed"
"$RELMAN" --root "$ROOT" build --source "$SA" --id standalone >>"$WORK/build.log" 2>&1 ||
  die "build standalone failed: $WORK/build.log"
bytes() { du -sb "$1" | cut -f1; }
{
  printf 'release\tall_bytes\tnode_modules_bytes\tstandalone_bytes\n'
  built="$ROOT/releases/deploy-$DEPLOY_RUNS" # the last deploy's release: live, never pruned
  printf 'built\t%s\t%s\t\n' "$(bytes "$built")" "$(bytes "$built/node_modules")"
  printf 'standalone\t%s\t%s\t%s\n' "$(bytes "$ROOT/releases/standalone")" \
    "$(bytes "$ROOT/releases/standalone/node_modules")" "$(bytes "$ROOT/releases/standalone/.next/standalone")"
} >"$SIZES"

{
  machine_info
  echo "- app: create-next-app 16.4.3 App Router template (Google Fonts import dropped, /slow route added), next $(node -p "require('$SRC/package.json').dependencies.next"), PM2 $("$PM2" --version 2>/dev/null | tail -1) cluster mode, 2 instances, kill_timeout 10000 ms; node $(node --version)"
} >"$WORK/results/meta.md"
declare -p RELOADS DEPLOY_RUNS LOAD_ARGS >"$WORK/results/params.sh"
fi # REPORT_ONLY

# --- report -------------------------------------------------------------------------------
field() { awk -F'\t' -v s="$2" -v c="$3" 'NR > 1 && $1 == s { print $c }' "$1"; }
col() { awk -F'\t' -v s="$2" -v c="$3" 'NR > 1 && $1 == s { print $c }' "$1"; }

echo "## Next.js: the server under PM2, and a whole deploy (\`bench/next.sh\`)"
echo
cat "$WORK/results/meta.md"
echo "- load: \`loadgen ${LOAD_ARGS[*]}\` for the whole of each server's $RELOADS activations (\`relman activate\`, alternating two releases, 1 s apart)"
echo
echo "| server | activations | ok | failed requests | retried (a keep-alive socket closed under the client, sent again) | old workers SIGKILLed at kill_timeout | worst exit code |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for server in next-start next-server; do
  case $server in
    next-start) label='`next start`' ;;
    next-server) label='`next-server.js` (what `relman init` writes)' ;;
  esac
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$(field "$SERVERS" "$server" 2)" \
    "$(field "$SERVERS" "$server" 3)" "$(field "$SERVERS" "$server" 4)" "$(field "$SERVERS" "$server" 5)" \
    "$(field "$SERVERS" "$server" 6)" "$(field "$SERVERS" "$server" 7)"
done
echo
for server in next-start next-server; do
  failures=$(field "$SERVERS" "$server" 8)
  [[ -n "$failures" && "$failures" != "[]" ]] && echo "- failures with $server: \`$failures\`"
done
echo
mapfile -t r_wall < <(col "$DEPLOYS" relman 3)
mapfile -t r_build < <(col "$DEPLOYS" relman 4)
mapfile -t r_act < <(col "$DEPLOYS" relman 5)
mapfile -t b_wall < <(col "$DEPLOYS" bare 3)
mapfile -t b_build < <(col "$DEPLOYS" bare 4)
mapfile -t b_reload < <(col "$DEPLOYS" bare 5)
echo "A whole deploy, ${DEPLOY_RUNS} runs each, interleaved, medians in seconds:"
echo
echo "| | wall | build | go live |"
echo "| --- | ---: | ---: | ---: |"
echo "| \`relman deploy\` (fresh release, node_modules reused, preflight, worker-by-worker roll with proofs, probe, prune) | $(median "${r_wall[@]}") | $(median "${r_build[@]}") | $(median "${r_act[@]}") |"
echo "| \`npm run build\` in place + \`pm2 reload APP\` (no gate) | $(median "${b_wall[@]}") | $(median "${b_build[@]}") | $(median "${b_reload[@]}") |"
echo "| ratio | $(ratio "$(median "${r_wall[@]}")" "$(median "${b_wall[@]}")") | | |"
mapfile -t r_next < <(col "$DEPLOYS" relman 6)
mapfile -t c_next < <(col "$DEPLOYS" cold 6)
echo
echo "The \`next build\` step alone (\`build.command\`), medians in seconds: cold (\`relman build --no-reuse\`, no \`.next/cache\`) $(median "${c_next[@]}"), warm (in \`relman deploy\`, the previous release's \`.next/cache\` carried) $(median "${r_next[@]}"): warm / cold = $(ratio "$(median "${r_next[@]}")" "$(median "${c_next[@]}")")."
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
size() { awk -F'\t' -v r="$1" -v c="$2" 'NR > 1 && $1 == r { print $c }' "$SIZES"; }
echo
echo "Release size (\`du -sb\`, MiB): a release as \`relman build\` makes it, and the same app with \`output: 'standalone'\`:"
echo
echo "| release | whole release | its node_modules | .next/standalone (what the workers load) |"
echo "| --- | ---: | ---: | ---: |"
echo "| as built (\`node_modules\` in it, counted whole) | $(mib "$(size built 2)") | $(mib "$(size built 3)") | |"
echo "| \`output: 'standalone'\` | $(mib "$(size standalone 2)") | $(mib "$(size standalone 3)") | $(mib "$(size standalone 4)") |"
