#!/usr/bin/env bash
# Deploy benchmark: failed requests per deploy under load for three ways of deploying a PM2
# cluster app (2 instances), and the time `relman activate` takes against a bare
# `pm2 reload APP`.
#
# usage: bench/deploy.sh     (DEPLOYS=11 per strategy with the broken one at BROKEN_AT=6,
#                             TIMING_RUNS=10, DWELL=2 s of load after each deploy returns)
#        REPORT_ONLY=1 bench/deploy.sh   prints the report again from .bench/deploy/results/
#
# Strategies, each over the same sequence of deploys alternating between two healthy
# releases, with one broken release (the fixture's `worker-crash` variant: fine under plain
# `node`, crashes at boot under PM2) in the middle:
#   (a) flip `current` + `pm2 restart APP`     (b) flip `current` + `pm2 reload APP`
#   (c) `relman activate ID`
# Each deploy gets its own loadgen run (4 keep-alive, 2 fresh, 1 slow worker): started PRE s
# before the deploy, stopped through its stop file DWELL s after the deploy command returned.
#
# PM2 runs with its own PM2_HOME under a temp dir and is killed at the end; everything else
# lives under .bench/deploy/ (gitignored). Markdown on stdout, progress on stderr.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

DEPLOYS=${DEPLOYS:-11}
BROKEN_AT=${BROKEN_AT:-6}
TIMING_RUNS=${TIMING_RUNS:-10}
PRE=${PRE:-0.5}
DWELL=${DWELL:-2}
LOAD_ARGS=(--keepalive 4 --fresh 2 --slow 1 --slow-ms 800 --seconds 120)
WORK=${BENCH_DIR:-$REPO/.bench/deploy}
ROOT="$WORK/root"
APP="relman-bench-$$"
ECOSYSTEM="$WORK/ecosystem.config.js"

RESULTS="$WORK/results/deploys.tsv"
TIMING="$WORK/results/timing.tsv"

command -v curl >/dev/null || die "curl not found"
command -v node >/dev/null || die "node not found"
if [[ "${REPORT_ONLY:-0}" == 1 ]]; then
  [[ -f "$WORK/results/params.sh" ]] || die "no results in $WORK/results: run bench/deploy.sh first"
  # shellcheck source=/dev/null
  source "$WORK/results/params.sh"
else # --- the measurement, up to `fi # REPORT_ONLY` ---
build_release
ensure_pm2

scratch_pm2

PORT=$(free_port)
URL="http://127.0.0.1:$PORT/health"
say "deploy root $ROOT, app $APP on port $PORT, PM2_HOME $PM2_HOME"

# --- deploy root, releases, app ---------------------------------------------------------
"$RELMAN" --root "$ROOT" init >/dev/null 2>&1
cat >"$ROOT/relman.toml" <<EOF
[build]
install = ""                      # the fixture has no dependencies
expect = ["build/BUILD_ID"]

[pm2]
app = "$APP"
bin = "$PM2"
timeout_secs = 60

[preflight]
command = "node server.js"
url = "http://127.0.0.1:{port}/health"
timeout_secs = 10

[verify]
url = "$URL"
body_contains = "{release}"
EOF

make_release() { # ID VARIANT
  local src="$WORK/src-$1"
  mkdir -p "$src"
  (cd "$REPO/fixtures/node-app" && tar --exclude=node_modules --exclude=build -cf - .) | tar -xf - -C "$src"
  printf '%s\n' "$2" >"$src/VARIANT"
  "$RELMAN" --root "$ROOT" build --source "$src" --id "$1" >/dev/null 2>>"$WORK/build.log" ||
    die "relman build $1 failed, see $WORK/build.log"
}
say "building releases rel-a, rel-b (healthy) and rel-broken (worker-crash)"
make_release rel-a healthy
make_release rel-b healthy
make_release rel-broken worker-crash

cat >"$ECOSYSTEM" <<EOF
module.exports = {
  apps: [{
    name: '$APP',
    cwd: '$ROOT/current',
    script: 'server.js',
    exec_mode: 'cluster',
    instances: 2,
    kill_timeout: 10000,
    env: { PORT: '$PORT' },
  }],
};
EOF

# `current` by hand, the way deploy scripts do it: a fresh symlink renamed over the old one.
flip() {
  ln -sfn "releases/$1" "$ROOT/current.bench-tmp"
  mv -T "$ROOT/current.bench-tmp" "$ROOT/current"
}
# One health check: "200 rel-a", "500 rel-b" or "down (...)".
health() {
  local body code err
  err=$(mktemp)
  if body=$(curl -sS -m 2 -w '\n%{http_code}' "$URL" 2>"$err"); then
    code=$(tail -1 <<<"$body")
    printf '%s %s\n' "$code" "$(sed -n 's/.*"release":"\([^"]*\)".*/\1/p' <<<"$body" | head -1)"
  else
    printf 'down (%s)\n' "$(head -1 "$err" | sed 's/^curl: ([0-9]*) //; s/ after [0-9]* ms.*//' | cut -c1-60)"
  fi
  rm -f "$err"
}
# Waits until 6 checks in a row answer 200 from release $1 (both workers, most likely).
wait_serving() {
  local deadline=$((SECONDS + 60)) streak=0
  while ((streak < 6)); do
    if [[ "$(health)" == "200 $1" ]]; then streak=$((streak + 1)); else streak=0; fi
    ((SECONDS < deadline)) || die "the app never served $1 (last: $(health))"
    sleep 0.1
  done
}
workers() { # "online/online r0/r0": status and restarts of each instance
  "$PM2" jlist 2>/dev/null | node -e '
    let t = ""; process.stdin.on("data", (d) => (t += d)).on("end", () => {
      const l = JSON.parse(t.slice(t.indexOf("[")));
      console.log(l.map((p) => `${p.pm2_env.status}(${p.pm2_env.restart_time} restarts)`).join(" "));
    });'
}
# A known start for every strategy: rel-a live, a fresh app.
reset_app() {
  pm2 delete "$APP" || true
  flip rel-a
  pm2 start "$ECOSYSTEM"
  wait_serving rel-a
}

# --- failed requests per deploy -----------------------------------------------------------
deploy() { # STRATEGY ID N -> exit code of the deploy command
  local rc=0
  case $1 in
    restart) flip "$2" && pm2 restart "$APP" || rc=$? ;;
    reload) flip "$2" && pm2 reload "$APP" || rc=$? ;;
    relman) "$RELMAN" --root "$ROOT" activate "$2" --json >"$WORK/results/load-activate-$3.json" 2>>"$WORK/activate.log" || rc=$? ;;
  esac
  return "$rc"
}

printf 'strategy\tn\ttarget\trc\tdeploy_s\tok\tfailed\tretried\tlive_after\thealth_after\tworkers_after\tfailures\n' >"$RESULTS"
run_strategy() { # STRATEGY
  local strategy=$1 n healthy=0 target rc start secs stats
  say "strategy $strategy: resetting the app to rel-a"
  reset_app
  for ((n = 1; n <= DEPLOYS; n++)); do
    if ((n == BROKEN_AT)); then
      target=rel-broken
    else
      healthy=$((healthy + 1))
      if ((healthy % 2)); then target=rel-b; else target=rel-a; fi
    fi
    rm -f "$WORK/stop"
    "$LOADGEN" --addr "127.0.0.1:$PORT" "${LOAD_ARGS[@]}" --stop-file "$WORK/stop" >"$WORK/loadgen.out" &
    LOADGEN_PID=$!
    sleep "$PRE"
    start=$(now)
    rc=0
    deploy "$strategy" "$target" "$n" || rc=$?
    secs=$(elapsed "$start" "$(now)")
    sleep "$DWELL"
    # What users get now, before the next deploy: taken while the load still runs.
    local live health_now workers_now
    live=$(readlink "$ROOT/current" | sed 's|^releases/||')
    health_now=$(health)
    workers_now=$(workers)
    touch "$WORK/stop"
    wait "$LOADGEN_PID"
    LOADGEN_PID=""
    stats=$(cat "$WORK/loadgen.out")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$strategy" "$n" "$target" "$rc" "$secs" \
      "$(json_get ok <<<"$stats")" "$(json_get failed <<<"$stats")" "$(json_get retried <<<"$stats")" \
      "$live" "$health_now" "$workers_now" "$(json_get failures <<<"$stats")" >>"$RESULTS"
    say "  $strategy #$n -> $target: rc $rc in ${secs}s, failed $(json_get failed <<<"$stats"), retried $(json_get retried <<<"$stats"); live $live, $health_now"
  done
}

for strategy in restart reload relman; do
  run_strategy "$strategy"
done

# --- time: relman activate vs a bare pm2 reload (no load) -------------------------------
say "timing: relman activate vs pm2 reload, $TIMING_RUNS each, interleaved"
reset_app
printf 'what\trun\ttarget\twall_s\tintegrity\tpreflight\tflip\treload\tprobe\ttotal\tworker0_ms\tworker1_ms\n' >"$TIMING"
live=rel-a
for ((i = 1; i <= TIMING_RUNS; i++)); do
  if ((i % 2)); then order=(relman bare); else order=(bare relman); fi
  for what in "${order[@]}"; do
    if [[ $live == rel-a ]]; then target=rel-b; else target=rel-a; fi
    case $what in
      relman)
        start=$(now)
        out=$("$RELMAN" --root "$ROOT" activate "$target" --json 2>>"$WORK/activate.log") ||
          die "relman activate $target failed: $out"
        secs=$(elapsed "$start" "$(now)")
        printf '%s\n' "$out" >"$WORK/results/timing-activate-$i.json"
        d() { json_get "durations_ms.$1" <<<"$out"; }
        printf 'relman\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$target" "$secs" \
          "$(d integrity)" "$(d preflight)" "$(d flip)" "$(d reload)" "$(d probe)" "$(d total)" \
          "$(json_get workers.0.ms <<<"$out")" "$(json_get workers.1.ms <<<"$out")" >>"$TIMING"
        ;;
      bare)
        flip "$target"
        start=$(now)
        pm2 reload "$APP" || die "pm2 reload failed"
        secs=$(elapsed "$start" "$(now)")
        printf 'bare\t%s\t%s\t%s\t\t\t\t\t\t\t\t\n' "$i" "$target" "$secs" >>"$TIMING"
        ;;
    esac
    live=$target
    wait_serving "$live"
    sleep 1
  done
  say "  timing run $i/$TIMING_RUNS"
done
# The cost of one PM2 command line round trip, which every step of relman's roll pays.
declare -a t_jlist=()
for ((i = 1; i <= TIMING_RUNS; i++)); do
  start=$(now)
  "$PM2" jlist >/dev/null 2>&1
  t_jlist+=("$(elapsed "$start" "$(now)")")
done

printf '%s\n' "${t_jlist[@]}" >"$WORK/results/jlist.txt"
{
  machine_info
  echo "- app: fixtures/node-app in PM2 $("$PM2" --version 2>/dev/null | tail -1) cluster mode, 2 instances, kill_timeout 10000; node $(node --version)"
} >"$WORK/results/meta.md"
declare -p DEPLOYS BROKEN_AT TIMING_RUNS PRE DWELL LOAD_ARGS >"$WORK/results/params.sh"
fi # REPORT_ONLY

# --- report -------------------------------------------------------------------------------
col() { # FILE STRATEGY COLUMN [FILTER-TARGET-REGEX] -> values
  awk -F'\t' -v s="$2" -v c="$3" -v f="${4:-.}" 'NR > 1 && $1 == s && $3 ~ f { print $c }' "$1"
}
sum() { awk '{ s += $1 } END { print s + 0 }'; }

echo "## Deploys under load: failed requests"
echo
cat "$WORK/results/meta.md"
echo "- load per deploy: \`loadgen --addr 127.0.0.1:PORT ${LOAD_ARGS[*]} --stop-file STOP\`, started ${PRE} s before the deploy command, stopped ${DWELL} s after it returned"
echo "- $DEPLOYS deploys per strategy: healthy releases alternating rel-b, rel-a, …, with rel-broken (\`worker-crash\`: passes a plain \`node server.js\` preflight, crashes at boot under PM2) as deploy #$BROKEN_AT"
echo
echo "| strategy | deploys | failed requests (total) | failed per deploy: median / max | in healthy deploys | … of which the one after the broken | in the broken deploy | retried | ok | live after the broken release (${DWELL} s after the command returned) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for strategy in restart reload relman; do
  case $strategy in
    restart) label='(a) flip + `pm2 restart APP`' ;;
    reload) label='(b) flip + `pm2 reload APP`' ;;
    relman) label='(c) `relman activate ID`' ;;
  esac
  mapfile -t failed < <(col "$RESULTS" "$strategy" 7)
  deploys=${#failed[@]}
  total=$(printf '%s\n' "${failed[@]}" | sum)
  healthy_failed=$(col "$RESULTS" "$strategy" 7 '^rel-[ab]$' | sum)
  broken_failed=$(col "$RESULTS" "$strategy" 7 '^rel-broken$' | sum)
  after_failed=$(awk -F'\t' -v s="$strategy" -v n="$((BROKEN_AT + 1))" 'NR > 1 && $1 == s && $2 == n { print $7 }' "$RESULTS")
  retried=$(col "$RESULTS" "$strategy" 8 | sum)
  ok=$(col "$RESULTS" "$strategy" 6 | sum)
  live_after=$(awk -F'\t' -v s="$strategy" 'NR > 1 && $1 == s && $3 == "rel-broken" { printf "`current` = %s, /health: %s, rc %s", $9, $10, $4 }' "$RESULTS")
  printf '| %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$deploys" "$total" \
    "$(median "${failed[@]}" | sed 's/\.000$//')" "$(maximum "${failed[@]}")" "$healthy_failed" "${after_failed:--}" "$broken_failed" "$retried" "$ok" "$live_after"
done
echo
echo "Per deploy (failed requests, in order; * = the broken release):"
echo
for strategy in restart reload relman; do
  printf -- '- %s: %s\n' "$strategy" "$(awk -F'\t' -v s="$strategy" 'NR > 1 && $1 == s { printf "%s%s%s", (n++ ? ", " : ""), $7, ($3 == "rel-broken" ? "*" : "") }' "$RESULTS")"
done
echo
echo "Most frequent failure kinds (loadgen's descriptions, summed over the strategy's deploys):"
echo
for strategy in restart reload relman; do
  kinds=$(awk -F'\t' -v s="$strategy" 'NR > 1 && $1 == s { print $12 }' "$RESULTS" | node -e '
    let t = ""; process.stdin.on("data", (d) => (t += d)).on("end", () => {
      const counts = new Map();
      for (const line of t.split("\n").filter(Boolean)) {
        for (const f of JSON.parse(line)) {
          const m = /^(\d+)x (.*)$/.exec(f);
          if (m) counts.set(m[2], (counts.get(m[2]) || 0) + Number(m[1]));
        }
      }
      const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 3);
      console.log(top.length ? top.map(([k, n]) => `${n}x ${k}`).join("; ") : "none");
    });')
  printf -- '- %s: %s\n' "$strategy" "$kinds"
done
echo
{
  printf 'series\tx\ty\n'
  awk -F'\t' 'BEGIN { l["restart"] = "flip + pm2 restart"; l["reload"] = "flip + pm2 reload"; l["relman"] = "relman activate" }
    NR > 1 { print l[$1] "\t" $2 "\t" $7 }' "$RESULTS"
} >"$RESULTS_DIR/deploy-failed.tsv"
plot deploy-failed "Failed requests per deploy (#$BROKEN_AT: the broken release)" "deploy, in order" "failed requests"
echo
echo "## Time: \`relman activate\` vs a bare \`pm2 reload APP\` (healthy deploys, no load)"
echo
mapfile -t bare < <(col "$TIMING" bare 4)
mapfile -t wall < <(col "$TIMING" relman 4)
ms_col() { awk -F'\t' -v c="$1" 'NR > 1 && $1 == "relman" { printf "%.3f\n", $c / 1000 }' "$TIMING"; }
mapfile -t r_integrity < <(ms_col 5)
mapfile -t r_preflight < <(ms_col 6)
mapfile -t r_flip < <(ms_col 7)
mapfile -t r_reload < <(ms_col 8)
mapfile -t r_probe < <(ms_col 9)
mapfile -t r_total < <(ms_col 10)
mapfile -t r_w0 < <(ms_col 11)
mapfile -t r_w1 < <(ms_col 12)
m_bare=$(median "${bare[@]}")
echo "$TIMING_RUNS runs each, interleaved; every run moves the app to the other healthy release."
echo
echo "| what | median s | min–max s | vs bare reload |"
echo "| --- | ---: | ---: | ---: |"
trow() { printf '| %s | %s | %s–%s | %s |\n' "$1" "$(median "${@:3}")" "$(minimum "${@:3}")" "$(maximum "${@:3}")" "$2"; }
trow 'bare `pm2 reload APP` (after a flip by hand)' "1.00×" "${bare[@]}"
trow 'relman `reload` step (worker by worker, each proven)' "$(ratio "$(median "${r_reload[@]}")" "$m_bare")×" "${r_reload[@]}"
trow '… of which worker 0 (reload command to proven)' "" "${r_w0[@]}"
trow '… of which worker 1' "" "${r_w1[@]}"
trow 'relman `integrity` step (manifest check)' "" "${r_integrity[@]}"
trow 'relman `preflight` step' "" "${r_preflight[@]}"
trow 'relman `flip` step' "" "${r_flip[@]}"
trow 'relman `probe` step' "" "${r_probe[@]}"
trow 'relman `total` (its own `durations_ms.total`)' "$(ratio "$(median "${r_total[@]}")" "$m_bare")×" "${r_total[@]}"
trow '`relman activate ID --json`, wall clock' "$(ratio "$(median "${wall[@]}")" "$m_bare")×" "${wall[@]}"
mapfile -t t_jlist <"$WORK/results/jlist.txt"
mapfile -t r_other < <(awk -F'\t' 'NR > 1 && $1 == "relman" { printf "%.3f\n", ($10 - $5 - $6 - $7 - $8 - $9) / 1000 }' "$TIMING")
trow 'relman, in no step (lock, config, starting the PM2 session and reading the app before the preflight)' "" "${r_other[@]}"
trow 'one `pm2 jlist` (reference: a PM2 CLI round trip)' "" "${t_jlist[@]}"
echo
overhead=$(awk -v r="$(median "${r_reload[@]}")" -v b="$m_bare" 'BEGIN { printf "%.0f", (r - b) / b * 100 }')
overhead_total=$(awk -v r="$(median "${r_total[@]}")" -v b="$m_bare" 'BEGIN { printf "%.0f", (r - b) / b * 100 }')
echo "Overhead of the gated roll, (relman reload step − bare reload) / bare reload: **${overhead}%** (target < 10%: $( ((overhead < 10)) && echo met || echo MISSED)); of the whole activation (total − bare) / bare: ${overhead_total}%."
