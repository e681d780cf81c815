#!/usr/bin/env bash
# node_modules reuse on create-next-app's template (the stock app of bench/next.sh): what a
# build that skips the install pays to take the previous release's node_modules, in time and in
# extra disk, against `cp -a` of the same node_modules, measured in the same run, interleaved.
#
#   - `reuse_node_modules = "link"`: the `reuse` step of `relman build` (durations_ms.reuse)
#     where the file system has no clones (ext4): hard links to read-only files. It is what the
#     default (`true`) does when relman does not run as root; "link" says it for a root run.
#   - `reuse_node_modules = "copy"`: the same step copying every file (the reference).
#   - `cp -a RELEASE/node_modules DEST`.
#
# Extra disk per release is what `du` adds for the second release over the first (du counts a
# hard-linked file once), against the size of one node_modules. A `sync` goes before each timed
# step, so none pays for another's writeback, and nothing is deleted until the end (see
# bench/store.sh on ext4's allocator after a large delete).
#
# usage: bench/node-modules.sh     (RUNS=5; needs the npm registry once for the install)
# Everything lives under $TMPDIR/relman-bench-node-modules/ (BENCH_DIR). Markdown on stdout.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-5}
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/relman-bench-node-modules}
ROOT="$WORK/root"
SRC="$WORK/app"
export NEXT_TELEMETRY_DISABLED=1

build_release
rm -rf "$WORK" && mkdir -p "$WORK"
trap 'rm -rf "$WORK"/cp-* "$ROOT"' EXIT
stock_next_app "$SRC" "$WORK/setup.log"
"$RELMAN" --root "$ROOT" init >>"$WORK/setup.log" 2>&1
config() {
  printf '[build]\ninstall = "npm ci --no-audit --no-fund"\ncommand = ""\nexpect = []\nreuse_node_modules = "%s"\n\n[retention]\nkeep = 100\n' "$1" >"$ROOT/relman.toml"
}
# relman build --id ID with reuse $2; prints durations_ms.reuse in seconds.
build_reusing() {
  config "$2"
  local json
  json=$("$RELMAN" --root "$ROOT" build --source "$SRC" --id "$1" --json 2>>"$WORK/build.log") || die "build $1 failed: $WORK/build.log"
  [[ $(json_get reused_node_modules <<<"$json") == true ]] || die "build $1 did not reuse node_modules"
  awk -v ms="$(json_get durations_ms.reuse <<<"$json")" 'BEGIN { printf "%.3f\n", ms / 1000 }'
}

say "installing into release base (npm ci)"
config link
json=$("$RELMAN" --root "$ROOT" build --source "$SRC" --id base --json 2>>"$WORK/build.log") || die "build base failed: $WORK/build.log"
install_s=$(awk -v ms="$(json_get durations_ms.install <<<"$json")" 'BEGIN { printf "%.3f\n", ms / 1000 }')
protect_s=$(awk -v ms="$(json_get durations_ms.protect <<<"$json")" 'BEGIN { printf "%.3f\n", ms / 1000 }')
NM="$ROOT/releases/base/node_modules"
files=$(find "$NM" -type f | wc -l)
dirs=$(find "$NM" -type d | wc -l)
nm_kib=$(du -sk "$NM" | cut -f1)
clones=no
if cp --reflink=always "$NM/next/package.json" "$WORK/reflink-probe" 2>/dev/null; then clones=yes; fi
fs_type=$(findmnt -n -o FSTYPE --target "$ROOT")

link_s=() copy_s=() cpa_s=()
for ((n = 1; n <= RUNS; n++)); do
  order=(link copy cpa)
  ((n % 2)) || order=(cpa copy link)
  for what in "${order[@]}"; do
    sync
    case $what in
      link) link_s+=("$(build_reusing "link-$n" link)") ;;
      copy) copy_s+=("$(build_reusing "copy-$n" copy)") ;;
      cpa)
        start=$(now)
        cp -a "$NM" "$WORK/cp-$n"
        cpa_s+=("$(elapsed "$start" "$(now)")")
        ;;
    esac
  done
  say "  run $n: link ${link_s[-1]} s, copy ${copy_s[-1]} s, cp -a ${cpa_s[-1]} s"
done

extra_kib() { # the disk the release $1 adds over base
  local both
  both=$(du -sk "$ROOT/releases/base" "$ROOT/releases/$1" | awk '{ s += $1 } END { print s }')
  echo $((both - $(du -sk "$ROOT/releases/base" | cut -f1)))
}
link_extra=$(extra_kib link-1)
copy_extra=$(extra_kib copy-1)
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", 100 * a / b }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f\n", k / 1024 }'; }

# Per-run ratios (same run, same conditions) and their median, besides the ratio of medians.
ratios=()
for ((i = 0; i < RUNS; i++)); do ratios+=("$(ratio "${link_s[i]}" "${cpa_s[i]}")"); done

cat <<EOF
$(machine_info)
- file system: $fs_type, clones $(if [[ $clones == yes ]]; then echo available; else echo 'not available (`cp --reflink=always` fails)'; fi)
- node_modules: $files files, $dirs directories, $(mib "$nm_kib") MiB (\`du\`); \`npm ci\` took $install_s s, and the \`protect\` step (write bits off, once per install) $protect_s s

| what | median s | min–max s | vs \`cp -a\` | extra disk per release | of one node_modules |
| --- | ---: | ---: | ---: | ---: | ---: |
| \`reuse\` step, \`"link"\` (hard links) | $(median "${link_s[@]}") | $(minimum "${link_s[@]}")–$(maximum "${link_s[@]}") | $(ratio "$(median "${link_s[@]}")" "$(median "${cpa_s[@]}")")× | $(mib "$link_extra") MiB | $(pct "$link_extra" "$nm_kib")% |
| \`reuse\` step, \`"copy"\` | $(median "${copy_s[@]}") | $(minimum "${copy_s[@]}")–$(maximum "${copy_s[@]}") | $(ratio "$(median "${copy_s[@]}")" "$(median "${cpa_s[@]}")")× | $(mib "$copy_extra") MiB | $(pct "$copy_extra" "$nm_kib")% |
| \`cp -a node_modules\` | $(median "${cpa_s[@]}") | $(minimum "${cpa_s[@]}")–$(maximum "${cpa_s[@]}") | 1.00× | | |

Target: at most 0.1 of \`cp -a\`'s time and at most 5% of its extra disk per release:
$(awk -v r="$(median "${ratios[@]}")" -v d="$(pct "$link_extra" "$nm_kib")" 'BEGIN { print ((r <= 0.1 && d <= 5) ? "met" : "missed") }') (median of the per-run time ratios $(median "${ratios[@]}")×; extra disk $(pct "$link_extra" "$nm_kib")%, the directories, which are never shared).
The write isolation is a test, not a figure: \`cli::a_write_into_a_shared_node_modules_cannot_reach_another_release\`.
EOF
