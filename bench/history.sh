#!/usr/bin/env bash
# `list` and `status` on a root with RELEASES releases (and a go-live without PM2 against a
# bare rename(2)), against a short history and a long one
# (HISTORY_MB of entries about releases pruned long ago, as a busy host accumulates): wall time
# (median of RUNS) and peak memory (max RSS, /usr/bin/time). `relman history --json`, which
# reads the whole file by design, is the reference row.
#
# usage: bench/history.sh      (RELEASES=500 HISTORY_MB=50 RUNS=11)
#        BASELINE=/path/to/older/relman bench/history.sh   adds that binary's rows, same run
# Everything lives under $TMPDIR/relman-bench-history/ (BENCH_DIR). Markdown on stdout.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RELEASES=${RELEASES:-500}
HISTORY_MB=${HISTORY_MB:-50}
RUNS=${RUNS:-11}
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/relman-bench-history}
ROOT="$WORK/root"
build_release
rm -rf "$WORK" && mkdir -p "$WORK/src"
echo 'console.log("hi")' >"$WORK/src/index.js"

say "building $RELEASES releases"
"$RELMAN" --root "$ROOT" init >/dev/null 2>&1
printf '[build]\ninstall = ""\ncommand = ""\nexpect = []\n\n[retention]\nkeep = %s\n' "$RELEASES" >"$ROOT/relman.toml"
for ((i = 1; i <= RELEASES; i++)); do
  "$RELMAN" --root "$ROOT" build --source "$WORK/src" --id "$(printf 'r%04d' "$i")" >/dev/null 2>&1 ||
    die "build $i failed"
done
for id in r0001 "$(printf 'r%04d' $((RELEASES - 1)))" "$(printf 'r%04d' "$RELEASES")"; do
  "$RELMAN" --root "$ROOT" activate "$id" --no-reload --no-probe >/dev/null 2>&1 || die "activate $id failed"
done
cp "$ROOT/.relman/history.jsonl" "$WORK/short.jsonl"

say "writing a ${HISTORY_MB} MB history"
node -e '
  const fs = require("fs");
  const [out, mb] = [process.argv[1], Number(process.argv[2])];
  const lines = [];
  let bytes = 0, i = 0;
  const start = Date.parse("2025-01-01T00:00:00Z");
  while (bytes < mb * 1e6) {
    const line = JSON.stringify({
      at: new Date(start + i * 60000).toISOString(), action: "activate",
      from: "old" + i, to: "old" + (i + 1), result: i % 9 ? "ok" : "failed",
      reason: i % 9 ? null : "worker 0 (pid 4242) of old" + (i + 1) + " failed its health check `/health` after 10 attempt(s), last: status 500, expected 200",
      durations_ms: { integrity: 3, preflight: 812, flip: 0, reload: 2410, probe: 35, total: 3290 },
    }) + "\n";
    lines.push(line); bytes += line.length; i++;
  }
  fs.writeFileSync(out, lines.join(""));' "$WORK/old.jsonl" "$HISTORY_MB"
cat "$WORK/old.jsonl" "$WORK/short.jsonl" >"$WORK/long.jsonl"

# One row: median wall time and peak memory of RUNS runs of `relman --json ARGS` by BIN.
row() {
  local bin=$1 label=$2 history=$3 what=$4; shift 4
  cp "$WORK/$history.jsonl" "$ROOT/.relman/history.jsonl"
  local secs=() rss=() start
  for ((run = 0; run < RUNS; run++)); do
    start=$(now)
    /usr/bin/time -o "$WORK/time.txt" -f '%M' "$bin" --root "$ROOT" --json "$@" >/dev/null 2>&1 || true
    secs+=("$(elapsed "$start" "$(now)")")
    rss+=("$(tail -1 "$WORK/time.txt")")
  done
  printf '| `%s` | %s | %s | %s | %.1f |\n' "$what" "$label" "$history ($(du -h "$WORK/$history.jsonl" | cut -f1))" \
    "$(awk -v s="$(median "${secs[@]}")" 'BEGIN { printf "%.1f", s * 1000 }')" \
    "$(awk -v k="$(maximum "${rss[@]}")" 'BEGIN { print k / 1024 }')"
}

{
  echo "## list and status with $RELEASES releases (\`bench/history.sh\`)"
  echo
  machine_info
  echo "- the long history: $(wc -l <"$WORK/long.jsonl") entries, the recent ones about the $RELEASES releases on disk, the rest about releases pruned long before the oldest of them"
  echo
  echo "| command | relman | history | median ms (of $RUNS) | max RSS MiB |"
  echo "| --- | --- | --- | ---: | ---: |"
  for cmd in list status; do
    for history in short long; do
      row "$RELMAN" this "$history" "$cmd" "$cmd"
      [[ -n "${BASELINE:-}" ]] && row "$BASELINE" "baseline" "$history" "$cmd" "$cmd"
    done
  done
  row "$RELMAN" this long 'history (reads it all, by design)' history
  echo
  echo "Going live without PM2 (\`activate ID --no-reload --no-probe --skip-integrity\`, alternating two releases, the long history in place) against a bare \`rename(2)\` of a symlink (\`mv -T\`, a process of its own too), medians of $RUNS in ms:"
  echo
  local_a=$(printf 'r%04d' $((RELEASES - 2)))
  local_b=$(printf 'r%04d' $((RELEASES - 3)))
  act=() mv=()
  for ((run = 0; run < RUNS; run++)); do
    id=$local_a; ((run % 2)) && id=$local_b
    start=$(now)
    "$RELMAN" --root "$ROOT" activate "$id" --no-reload --no-probe --skip-integrity >/dev/null 2>&1 || die "activate $id failed"
    act+=("$(elapsed "$start" "$(now)")")
    ln -s "releases/$id" "$WORK/next-link"
    start=$(now)
    mv -T "$WORK/next-link" "$WORK/link"
    mv+=("$(elapsed "$start" "$(now)")")
  done
  ms() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }
  echo "| \`relman activate … --no-reload --no-probe --skip-integrity\` | \`mv -T\` (rename(2)) | ratio |"
  echo "| ---: | ---: | ---: |"
  echo "| $(ms "$(median "${act[@]}")") | $(ms "$(median "${mv[@]}")") | $(ratio "$(median "${act[@]}")" "$(median "${mv[@]}")") |"
}
