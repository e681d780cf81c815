#!/usr/bin/env bash
# Scaling: each command's time as the releases grow (RELEASE_COUNTS, tiny releases) and as the
# files of one release grow (FILE_COUNTS), each against a reference that does the same work
# without relman, interleaved; a fit of median = fixed + per-item cost says where it is
# constant and where linear. Draws docs/scaling-releases.svg and docs/scaling-files.svg from
# bench/results/scaling-*.tsv.
#
# usage: bench/scaling.sh   (RELEASE_COUNTS="10 100 500" FILE_COUNTS="1000 20000 200000"
#                            RUNS=7 on the release axis, RUNS_FILES=5 on the file axis and
#                            RUNS_BIG=2 from 100,000 files up; BENCH_NO_BUILD=1)
#
# Releases are fabricated: one tiny release built by `relman build`, copied (`cp -a`) to the
# other IDs with their seals rewritten (fabricate_releases in bench/lib.sh), since a real build
# fsyncs and seals for ~0.2 s. File trees come from bench/gen-tree.js (--large 0 --max-size
# 4096: the file count grows, not the bytes).
#
# Everything runs on a scratch ext4 of its own, .bench/scaling/fs.img (sparse, SCRATCH_GB=16)
# on a loop device with direct I/O, mounted without `discard` (when run as root; SCRATCH_FS=0
# or no root: in .bench/scaling/ itself). This machine's root filesystem is mounted with
# `discard` and has no journal: each freed block is discarded there and then, ~0.2 ms per
# small file, so deleting the copies of 200,000 files would take minutes per run, and it
# would measure the virtual disk, not relman. The image and the trees in it are kept between
# invocations (delete .bench/scaling to reclaim the space); everything else is deleted at the
# end. Markdown on stdout.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

read -r -a RELEASE_COUNTS <<<"${RELEASE_COUNTS:-10 100 500}"
read -r -a FILE_COUNTS <<<"${FILE_COUNTS:-1000 20000 200000}"
RUNS=${RUNS:-7}
RUNS_FILES=${RUNS_FILES:-5}
RUNS_BIG=${RUNS_BIG:-2}
WORK=${BENCH_DIR:-$REPO/.bench/scaling}
SEED=42
KEEP=5

build_release
command -v sha256sum >/dev/null || die "sha256sum not found"
mkdir -p "$WORK" "$RESULTS_DIR"

# --- the scratch filesystem -----------------------------------------------------------------
SCRATCH_GB=${SCRATCH_GB:-16}
# Inodes for every copy at once: 1.5 million at the default sizes.
SCRATCH_INODES=${SCRATCH_INODES:-2500000}
mount_scratch
cleanup() {
  rm -rf "$DATA"/root-* "$DATA"/run-* "$DATA"/cp-* "$DATA/src"
  unmount_scratch
}
rm -rf "$DATA"/root-* "$DATA"/run-* "$DATA"/cp-* "$DATA/src"
trap cleanup EXIT

new_root() {
  "$RELMAN" --root "$1" init >/dev/null 2>&1 || die "relman init $1 failed"
  printf '[build]\ninstall = ""\ncommand = ""\nexpect = []\n\n[retention]\nkeep = 1000000\n' >"$1/relman.toml"
}
# Milliseconds between two $EPOCHREALTIME readings.
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", (b - a) * 1000 }'; }
# T[what|n] holds the run times in ms, space-separated.
declare -A T=()
timed() { # WHAT N COMMAND...: runs it, adds its time to T
  local what=$1 n=$2 start; shift 2
  start=$(now)
  "$@" >/dev/null 2>&1 || die "$what at $n failed: $*"
  T["$what|$n"]+="$(ms_between "$start" "$(now)") "
}
# shellcheck disable=SC2086 # the word splitting is the point
med() { median ${T["$1|$2"]}; }
# shellcheck disable=SC2086
span() { printf '%s–%s' "$(fmt "$(minimum ${T["$1|$2"]})")" "$(fmt "$(maximum ${T["$1|$2"]})")"; }
fmt() { awk -v v="$1" 'BEGIN { printf (v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : "%.2f"), v }'; }
runs_for() { if (($1 >= 100000)); then echo "$RUNS_BIG"; else echo "$RUNS_FILES"; fi; }

mkdir -p "$DATA/src"
echo 'console.log("hi")' >"$DATA/src/index.js"

# --- as releases grow -----------------------------------------------------------------------
for n in "${RELEASE_COUNTS[@]}"; do
  ((n > KEEP + 3)) || die "RELEASE_COUNTS must be above $((KEEP + 3))"
  root="$DATA/root-r$n"
  say "releases: fabricating $n releases in $root"
  new_root "$root"
  "$RELMAN" --root "$root" build --source "$DATA/src" --id r00001 >/dev/null 2>&1 || die "build failed"
  mapfile -t ids < <(seq -f 'r%05g' 2 "$n")
  fabricate_releases "$root" r00001 "${ids[@]}"
  last=$(printf 'r%05d' "$n")
  for id in "$(printf 'r%05d' $((n - 1)))" "$last"; do
    "$RELMAN" --root "$root" activate "$id" --no-reload --no-probe >/dev/null 2>&1 || die "activate $id failed"
  done
  [[ "$("$RELMAN" --root "$root" list --json | node -e 'let t = ""; process.stdin.on("data", (d) => (t += d)).on("end", () => { const v = JSON.parse(t); console.log((Array.isArray(v) ? v : v.releases).length); })')" == "$n" ]] ||
    die "relman list does not see $n releases in $root"

  # Read-only: list and status against reading every seal with cat.
  for ((run = 0; run < RUNS; run++)); do
    order=(list status cat)
    ((run % 2)) && order=(cat status list)
    for what in "${order[@]}"; do
      case $what in
        list) timed list "$n" "$RELMAN" --root "$root" list --json ;;
        status) timed status "$n" "$RELMAN" --root "$root" status --json ;;
        cat) timed cat "$n" sh -c 'cat "$1"/releases/*/.relman/release.json' sh "$root" ;;
      esac
    done
  done
  # Going live without PM2, alternating two releases, against rename(2) of a symlink.
  a=$(printf 'r%05d' $((n - 2))) b=$(printf 'r%05d' $((n - 3)))
  ln -s "releases/$a" "$DATA/run-link"
  for ((run = 0; run < RUNS; run++)); do
    id=$a && ((run % 2)) && id=$b
    if ((run % 2)); then
      timed activate "$n" "$RELMAN" --root "$root" activate "$id" --no-reload --no-probe --skip-integrity
      ln -s "releases/$id" "$DATA/run-next-link" && timed mv "$n" mv -T "$DATA/run-next-link" "$DATA/run-link"
    else
      ln -s "releases/$id" "$DATA/run-next-link" && timed mv "$n" mv -T "$DATA/run-next-link" "$DATA/run-link"
      timed activate "$n" "$RELMAN" --root "$root" activate "$id" --no-reload --no-probe --skip-integrity
    fi
  done
  rm -f "$DATA/run-link"
  # prune --keep 5 on a fresh copy of the root, against rm -rf of the same releases in another.
  mapfile -t doomed < <(seq -f "$DATA/run-rm/releases/r%05g" 1 $((n - KEEP)))
  for ((run = 0; run < RUNS; run++)); do
    rm -rf "$DATA/run-relman" "$DATA/run-rm"
    cp -a "$root" "$DATA/run-relman" && cp -a "$root" "$DATA/run-rm" && sync
    if ((run % 2)); then
      timed rm "$n" rm -rf "${doomed[@]}"
      timed prune "$n" "$RELMAN" --root "$DATA/run-relman" prune --keep "$KEEP" --json
    else
      timed prune "$n" "$RELMAN" --root "$DATA/run-relman" prune --keep "$KEEP" --json
      timed rm "$n" rm -rf "${doomed[@]}"
    fi
    left=$(find "$DATA/run-relman/releases" -mindepth 1 -maxdepth 1 | wc -l)
    ((left == KEEP)) || die "prune --keep $KEEP left $left releases of $n"
  done
  rm -rf "$DATA/run-relman" "$DATA/run-rm" "$root"
  say "  $n releases: list $(med list "$n") ms, status $(med status "$n") ms, activate $(med activate "$n") ms, prune $(med prune "$n") ms (rm -rf $(med rm "$n") ms)"
done

# --- as files grow --------------------------------------------------------------------------
gen_stamp=$(sha256sum "$REPO/bench/gen-tree.js" | cut -c1-16)
for f in "${FILE_COUNTS[@]}"; do
  tree="$DATA/tree-$f"
  stamp="seed=$SEED files=$f $gen_stamp"
  if [[ ! -f "$tree.stamp" || "$(cat "$tree.stamp")" != "$stamp" ]]; then
    say "files: generating $tree ($f files)"
    rm -rf "$tree" "$tree.stamp"
    node "$REPO/bench/gen-tree.js" "$tree" --seed "$SEED" --files "$f" --large 0 --max-size 4096 >&2
    printf '%s\n' "$stamp" >"$tree.stamp"
  fi
  new_root "$DATA/root-f$f"
done
# Phase by phase over all sizes, copies first: on this ext4 a copy made soon after a big delete
# can pay for recently freed inodes (see bench/store.sh), so no timed copy follows a delete.
for f in "${FILE_COUNTS[@]}"; do
  tree="$DATA/tree-$f" root="$DATA/root-f$f" runs=$(runs_for "$f")
  say "files: $f, copying ($runs runs each)"
  tar -cf - -C "$tree" . | cat >/dev/null # the source in the page cache for both sides
  for ((run = 1; run <= runs; run++)); do
    order=(build cp)
    ((run % 2)) || order=(cp build)
    for what in "${order[@]}"; do
      sync
      case $what in
        build)
          start=$(now)
          out=$("$RELMAN" --root "$root" build --source "$tree" --id "b$run" --json 2>/dev/null) || die "build at $f failed"
          T["build|$f"]+="$(ms_between "$start" "$(now)") "
          T["copy|$f"]+="$(json_get durations_ms.copy <<<"$out") "
          ;;
        cp) timed cp "$f" cp -a "$tree" "$DATA/cp-$f-$run" ;;
      esac
    done
  done
  # Kept by every prune below, so that each deletes exactly one release of $f files.
  "$RELMAN" --root "$root" build --source "$DATA/src" --id bkeep >/dev/null 2>&1 || die "build bkeep failed"
done
for f in "${FILE_COUNTS[@]}"; do
  root="$DATA/root-f$f" runs=$(runs_for "$f")
  say "files: $f, hashing"
  for ((run = 1; run <= runs; run++)); do
    if ((run % 2)); then
      timed verify "$f" "$RELMAN" --root "$root" verify b1
      timed sha256sum "$f" sh -c 'cd "$1" && find . -path ./.relman -prune -o -type f -print0 | xargs -0 sha256sum' sh "$root/releases/b1"
    else
      timed sha256sum "$f" sh -c 'cd "$1" && find . -path ./.relman -prune -o -type f -print0 | xargs -0 sha256sum' sh "$root/releases/b1"
      timed verify "$f" "$RELMAN" --root "$root" verify b1
    fi
  done
done
for f in "${FILE_COUNTS[@]}"; do
  root="$DATA/root-f$f" runs=$(runs_for "$f")
  say "files: $f, deleting"
  sync
  for ((run = 1; run <= runs; run++)); do
    # Sorted newest first the root holds bkeep, b$runs … b$run: keeping runs - run + 1 of
    # them deletes b$run alone.
    if ((run % 2)); then
      timed prune "$f" "$RELMAN" --root "$root" prune --keep $((runs - run + 1))
      timed rm "$f" rm -rf "$DATA/cp-$f-$run"
    else
      timed rm "$f" rm -rf "$DATA/cp-$f-$run"
      timed prune "$f" "$RELMAN" --root "$root" prune --keep $((runs - run + 1))
    fi
    [[ ! -e "$root/releases/b$run" ]] || die "prune did not delete b$run"
  done
  say "  $f files: build $(med build "$f") ms (cp -a $(med cp "$f")), verify $(med verify "$f") ms (sha256sum $(med sha256sum "$f")), prune $(med prune "$f") ms (rm -rf $(med rm "$f"))"
done

# --- report ---------------------------------------------------------------------------------
# fit NAME SIZES...: least squares of median = fixed + per-item × size; prints
# "FIXED_MS PER_ITEM_US LINEAR_SHARE_AT_LARGEST".
fit() {
  local what=$1 x; shift
  for x in "$@"; do printf '%s %s\n' "$x" "$(med "$what" "$x")"; done | awk '
    { n++; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2; last_x = $1; last_y = $2 }
    END {
      b = (n * sxy - sx * sy) / (n * sxx - sx * sx); a = (sy - b * sx) / n
      share = last_y > 0 ? b * last_x / last_y : 0
      printf "%.2f %.1f %.2f\n", a, b * 1000, (share < 0 ? 0 : share)
    }'
}
verdict() { # LINEAR_SHARE -> words
  awk -v s="$1" 'BEGIN {
    if (s < 0.25) print "constant"; else if (s > 0.75) print "linear"; else print "fixed + linear" }'
}
# table UNIT SIZES: the rows named in ROWS (what;label;reference-what)
table() {
  local unit=$1; shift
  local sizes=("$@") header="| command |" rule="| --- |" x row what label ref fixed per share
  for x in "${sizes[@]}"; do header+=" $x: median ms (min–max) |"; rule+=" ---: |"; done
  echo "$header fixed ms | µs per $unit | share of the largest that grows | cost | vs reference at ${sizes[-1]} |"
  echo "$rule ---: | ---: | ---: | --- | ---: |"
  for row in "${ROWS[@]}"; do
    IFS=';' read -r what label ref <<<"$row"
    line="| $label |"
    for x in "${sizes[@]}"; do line+=" $(fmt "$(med "$what" "$x")") ($(span "$what" "$x")) |"; done
    read -r fixed per share <<<"$(fit "$what" "${sizes[@]}")"
    line+=" $(fmt "$fixed") | $per | $(awk -v s="$share" 'BEGIN { printf "%.0f%%", s * 100 }') | $(verdict "$share") |"
    if [[ -n "$ref" ]]; then
      line+=" $(ratio "$(med "$what" "${sizes[-1]}")" "$(med "$ref" "${sizes[-1]}")")× |"
    else
      line+=" |"
    fi
    echo "$line"
  done
}
tsv() { # NAME SIZES: the rows' medians as series/x/y for benchplot
  local name=$1; shift
  {
    printf 'series\tx\ty\n'
    for row in "${ROWS[@]}"; do
      IFS=';' read -r what label _ <<<"$row"
      label=${label//\`/}
      label=${label//\\|/|}
      for x in "$@"; do printf '%s\t%s\t%s\n' "$label" "$x" "$(med "$what" "$x")"; done
    done
  } >"$RESULTS_DIR/$name.tsv"
}

echo "## Scaling: time as releases and files grow"
echo
machine_info
echo "- filesystem: $FS_NOTE"
echo "- releases: ${RELEASE_COUNTS[*]} tiny sealed releases (one file each; one built, the rest copies with their own seals), the newest live and the one before it the rollback target; $RUNS interleaved runs of each"
echo "- files: trees from \`bench/gen-tree.js --seed $SEED --files N --large 0 --max-size 4096\` ($(for f in "${FILE_COUNTS[@]}"; do du -sm "$DATA/tree-$f" | awk -v f="$f" '{ printf "%s files: %s MB; ", f, $1 }'; done | sed 's/; $//')); $RUNS_FILES interleaved runs of each, $RUNS_BIG from 100,000 files up; \`sync\` before each copy"
echo "- fixed and per-item costs: a least-squares fit of the medians to fixed + per-item × size; \"share that grows\" is the per-item part of the largest size's median: constant under 25%, linear over 75%"
echo
echo "### As releases grow"
echo
ROWS=(
  'list;`relman list --json`;cat'
  'status;`relman status --json`;cat'
  'cat;`cat releases/*/.relman/release.json` (reference: every seal read);'
  'activate;`relman activate ID --no-reload --no-probe --skip-integrity`;mv'
  'mv;`mv -T` of a symlink (reference: rename(2));'
  "prune;\`relman prune --keep $KEEP\` (deletes all but $KEEP);rm"
  "rm;\`rm -rf\` of the same releases (reference);"
)
table release "${RELEASE_COUNTS[@]}"
tsv scaling-releases "${RELEASE_COUNTS[@]}"
echo
plot scaling-releases "Time as releases grow (median ms, log-log)" "releases in the deploy root" "ms" --log-x --log-y
echo
echo "### As files grow (one release)"
echo
ROWS=(
  'build;`relman build --source TREE` (copy, hash, manifest, seal);cp'
  'copy;… its `copy` step (`durations_ms.copy`);cp'
  'cp;`cp -a TREE DEST` (reference);'
  'verify;`relman verify ID`;sha256sum'
  'sha256sum;`find … \| xargs -0 sha256sum` (reference);'
  'prune;`relman prune` deleting one release;rm'
  'rm;`rm -rf` of a copy (reference);'
)
table file "${FILE_COUNTS[@]}"
tsv scaling-files "${FILE_COUNTS[@]}"
echo
plot scaling-files "Time as a release's files grow (median ms, log-log)" "files in the release" "ms" --log-x --log-y
echo
