#!/usr/bin/env bash
# `relman prune` of RELEASES releases of FILES files each against `rm -rf` of the same,
# interleaved, RUNS runs each (target: prune within 1.1× of rm -rf).
#
# usage: bench/prune.sh   (RELEASES=50 FILES=20000 RUNS=3 KEEP=5; BENCH_NO_BUILD=1)
#
# One release is built by `relman build` from a bench/gen-tree.js tree (--large 0
# --max-size 4096) and made current; before every timed run the releases to delete are made
# anew as hard-linked copies of it (`cp -al`, the seals rewritten: fabricate_releases in
# bench/lib.sh), RELEASES + KEEP of them in the deploy root and RELEASES beside it for rm,
# then `sync`. Deleting a hard link frees no inode and no data block, on either side: what is
# timed is walking and unlinking 2 × RELEASES × FILES entries and their directories, which is
# where prune could lose to rm.
#
# On a scratch ext4 of its own (mount_scratch in bench/lib.sh: .bench/prune/fs.img on a loop
# device, SCRATCH_FS=0 for the root filesystem): on this machine's root filesystem, mounted
# with `discard` and without a journal, each freed directory block is discarded there and then,
# and those waits (15–50 s a side here, varying run to run by more than relman's whole share)
# decide the ratio. The image and the tree in it are kept between invocations, the rest is
# deleted at the end. Markdown on stdout, progress on stderr.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RELEASES=${RELEASES:-50}
FILES=${FILES:-20000}
RUNS=${RUNS:-3}
KEEP=${KEEP:-5}
WORK=${BENCH_DIR:-$REPO/.bench/prune}
SEED=42

build_release
mkdir -p "$WORK"
SCRATCH_GB=${SCRATCH_GB:-4}
SCRATCH_INODES=${SCRATCH_INODES:-400000}
mount_scratch
TREE="$DATA/tree-$FILES"
ROOT="$DATA/root"
cleanup() {
  rm -rf "$ROOT" "$DATA/rm" "$WORK/prune.json" "$WORK/prune.err"
  unmount_scratch
}
rm -rf "$ROOT" "$DATA/rm"
trap cleanup EXIT

stamp="seed=$SEED files=$FILES $(sha256sum "$REPO/bench/gen-tree.js" | cut -c1-16)"
if [[ ! -f "$TREE.stamp" || "$(cat "$TREE.stamp")" != "$stamp" ]]; then
  say "generating $TREE ($FILES files)"
  rm -rf "$TREE" "$TREE.stamp"
  node "$REPO/bench/gen-tree.js" "$TREE" --seed "$SEED" --files "$FILES" --large 0 --max-size 4096 >&2
  printf '%s\n' "$stamp" >"$TREE.stamp"
fi

"$RELMAN" --root "$ROOT" init >/dev/null 2>&1
printf '[build]\ninstall = ""\ncommand = ""\nexpect = []\n\n[retention]\nkeep = 1000000\n' >"$ROOT/relman.toml"
say "building the template release"
"$RELMAN" --root "$ROOT" build --source "$TREE" --id template >/dev/null 2>&1 || die "relman build failed"
# Current, so protected: every prune keeps it whatever its age.
"$RELMAN" --root "$ROOT" activate template --no-reload --no-probe >/dev/null 2>&1 || die "activate failed"
entries=$(find "$ROOT/releases/template" | wc -l)
mapfile -t ids < <(seq -f 'r%04g' 1 $((RELEASES + KEEP)))
mapfile -t doomed < <(seq -f "$DATA/rm/r%04g" 1 "$RELEASES")

make_copies() {
  local id
  rm -rf "$DATA/rm" "${ids[@]/#/$ROOT/releases/}"
  LINK=1 fabricate_releases "$ROOT" template "${ids[@]}"
  mkdir -p "$DATA/rm"
  for id in "${doomed[@]}"; do cp -al "$ROOT/releases/template" "$id"; done
  sync
}

declare -a t_prune=() t_rm=() t_dry=()
for ((run = 1; run <= RUNS; run++)); do
  say "run $run/$RUNS: making $((2 * RELEASES + KEEP)) hard-linked copies"
  make_copies
  start=$(now)
  "$RELMAN" --root "$ROOT" prune --keep "$KEEP" --dry-run --json >/dev/null 2>&1 || die "prune --dry-run failed"
  t_dry+=("$(elapsed "$start" "$(now)")")
  if ((run % 2)); then order=(prune rm); else order=(rm prune); fi
  for what in "${order[@]}"; do
    sync
    start=$(now)
    case $what in
      prune) "$RELMAN" --root "$ROOT" prune --keep "$KEEP" --json >"$WORK/prune.json" 2>"$WORK/prune.err" || die "prune failed: $(cat "$WORK/prune.err")" ;;
      rm) rm -rf "${doomed[@]}" ;;
    esac
    secs=$(elapsed "$start" "$(now)")
    case $what in
      prune) t_prune+=("$secs") ;;
      rm) t_rm+=("$secs") ;;
    esac
  done
  deleted=$(json_get deleted <"$WORK/prune.json" | node -e 'let t = ""; process.stdin.on("data", (d) => (t += d)).on("end", () => console.log(JSON.parse(t).length))')
  ((deleted == RELEASES)) || die "prune deleted $deleted releases, not $RELEASES"
  say "  prune ${t_prune[-1]} s, rm -rf ${t_rm[-1]} s (prune --dry-run ${t_dry[-1]} s)"
done

paired=()
for i in "${!t_prune[@]}"; do paired+=("$(awk -v a="${t_prune[$i]}" -v b="${t_rm[$i]}" 'BEGIN { printf "%.3f", a / b }')"); done
m_prune=$(median "${t_prune[@]}") m_rm=$(median "${t_rm[@]}")
r=$(ratio "$m_prune" "$m_rm")

echo "## Prune: $RELEASES releases of $FILES files against rm -rf"
echo
machine_info
echo "- filesystem: $FS_NOTE"
echo "- each release: $entries entries (files, directories, symlinks and relman's own files), hard links to one built release; $((RELEASES * entries)) entries deleted by each side per run"
echo "- $RUNS runs, each on fresh copies (\`cp -al\`, then \`sync\`), the two sides interleaved (order alternating)"
echo
echo "| what | median s | min–max s | vs \`rm -rf\` |"
echo "| --- | ---: | ---: | ---: |"
echo "| \`relman prune --keep $KEEP\` ($RELEASES deleted; $KEEP and the current release kept) | $m_prune | $(minimum "${t_prune[@]}")–$(maximum "${t_prune[@]}") | ${r}× |"
echo "| \`rm -rf\` of $RELEASES copies | $m_rm | $(minimum "${t_rm[@]}")–$(maximum "${t_rm[@]}") | 1.00× |"
echo "| \`relman prune --keep $KEEP --dry-run\` (reference: the overview and the size of what would go, nothing deleted) | $(median "${t_dry[@]}") | $(minimum "${t_dry[@]}")–$(maximum "${t_dry[@]}") | $(ratio "$(median "${t_dry[@]}")" "$m_rm")× |"
echo
echo "Target: \`relman prune\` within 1.1× of \`rm -rf\`: $(awk -v r="$r" 'BEGIN { print (r <= 1.1 ? "met" : "MISSED") }') (${r}× by the medians; median of the per-run ratios $(median "${paired[@]}")×)."
