#!/usr/bin/env bash
# Release store benchmark: hashing (`relman verify` vs `sha256sum`) and copying
# (`relman build --source` vs `cp -a`) on a generated tree of 20,000 files / ~300 MB. The hashing
# table also gives each side's CPU time, CPU / wall ratio and peak RSS (GNU time), and its GB/s as
# a share of the two-core limit: twice `openssl speed`'s single-core SHA-256 rate, measured in
# the same run.
#
# usage: bench/store.sh        (RUNS=7 timed runs of each side; QUIET=65, see below;
#                               BENCH_NO_BUILD=1 skips `cargo build`)
#
# Everything lives under .bench/store/ (gitignored): the tree (kept between invocations,
# regenerated only when bench/gen-tree.js changes), a scratch deploy root and the copies,
# all deleted at the end of the invocation. Prints Markdown on stdout, progress on stderr.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-7}
WORK=${BENCH_DIR:-$REPO/.bench/store}
TREE="$WORK/tree"
ROOT="$WORK/root"
SEED=42

build_release
command -v sha256sum >/dev/null || die "sha256sum not found"
mkdir -p "$WORK"

# --- the tree ---------------------------------------------------------------------------
stamp="seed=$SEED $(sha256sum "$REPO/bench/gen-tree.js" | cut -c1-16)"
if [[ ! -f "$WORK/tree.stamp" || "$(cat "$WORK/tree.stamp")" != "$stamp" ]]; then
  say "generating the tree in $TREE (seed $SEED)"
  rm -rf "$TREE" "$WORK/tree.stamp"
  date +%s >"$WORK/last-cleanup"
  node "$REPO/bench/gen-tree.js" "$TREE" --seed "$SEED" >&2
  printf '%s\n' "$stamp" >"$WORK/tree.stamp"
fi
tree_files=$(find "$TREE" -type f | wc -l)
tree_bytes=$(find "$TREE" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
tree_dirs=$(find "$TREE" -type d | wc -l)
tree_links=$(find "$TREE" -type l | wc -l)

# --- a scratch deploy root --------------------------------------------------------------
# Copies are not deleted between timed runs, only at the end: on ext4 without a journal (this
# machine's root filesystem) the inode allocator skips inodes freed in the last 60 s, or 360 s
# while their inode table block is dirty, paying a buffer-cache lookup for each, so a copy made
# right after deleting a 20,000-file copy can take 10x longer, at random, depending on which
# block groups it lands in. The run also starts QUIET s after its last cleanup (65 by default;
# QUIET=370 rules out the dirty-block window too, at the price of a longer wait). Both sides
# are measured interleaved, so what is left of the effect hits both alike.
QUIET=${QUIET:-65}
cleanup_all() {
  if [[ -e "$ROOT" ]] || compgen -G "$WORK/cp-*" >/dev/null; then
    rm -rf "$ROOT" "$WORK"/cp-*
    sync
    date +%s >"$WORK/last-cleanup"
  fi
}
cleanup_all
if [[ -f "$WORK/last-cleanup" ]]; then
  wait_s=$((QUIET - ($(date +%s) - $(cat "$WORK/last-cleanup"))))
  if ((wait_s > 0)); then
    say "waiting ${wait_s} s so that no recently freed inode is in the way (QUIET=$QUIET)"
    sleep "$wait_s"
  fi
fi
"$RELMAN" --root "$ROOT" init >/dev/null 2>&1
cat >"$ROOT/relman.toml" <<'EOF2'
[build]
install = ""
command = ""
expect = []
EOF2
trap cleanup_all EXIT

# --- hashing ----------------------------------------------------------------------------
say "sealing the release to verify"
"$RELMAN" --root "$ROOT" build --source "$TREE" --id hashed >/dev/null 2>&1
REL="$ROOT/releases/hashed"
sync

# Each side runs under GNU time for its CPU time (user + system, children included) and peak
# RSS (of its largest process); the wall time is still taken around it with $EPOCHREALTIME.
command -v /usr/bin/time >/dev/null || die "/usr/bin/time (GNU time) not found"
RUSAGE="$WORK/rusage"
rusage() { /usr/bin/time -f '%U %S %M' -o "$RUSAGE" "$@"; }
hash_relman() { rusage "$RELMAN" --root "$ROOT" verify hashed >/dev/null 2>&1; }
hash_sha256sum() {
  (cd "$REL" && rusage bash -c 'find . -path ./.relman -prune -o -type f -print0 | xargs -0 sha256sum >/dev/null')
}
hash_sha256sum_par() {
  (cd "$REL" && rusage bash -c 'find . -path ./.relman -prune -o -type f -print0 |
    xargs -0 -P "$(nproc)" -n 500 sha256sum >/dev/null')
}
hashed_bytes=$("$RELMAN" --root "$ROOT" verify hashed --json 2>/dev/null | json_get bytes)
hashed_files=$("$RELMAN" --root "$ROOT" verify hashed --json 2>/dev/null | json_get files)

say "hashing: warm-up"
hash_relman; hash_sha256sum; hash_sha256sum_par
declare -a t_relman=() t_sha=() t_shapar=()
# Per run: CPU seconds (user + system), CPU time / wall time, peak RSS in MB.
declare -a c_relman=() c_sha=() c_shapar=() u_relman=() u_sha=() u_shapar=() m_relman_rss=() m_sha_rss=() m_shapar_rss=()
for ((i = 1; i <= RUNS; i++)); do
  # Alternate the order so that neither side always runs right after the other.
  if ((i % 2)); then order=(relman sha par); else order=(par sha relman); fi
  for what in "${order[@]}"; do
    start=$(now)
    case $what in
      relman) hash_relman || die "relman verify hashed failed" ;;
      sha) hash_sha256sum ;;
      par) hash_sha256sum_par ;;
    esac
    secs=$(elapsed "$start" "$(now)")
    read -r user sys rss_kb <"$RUSAGE"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    util=$(awk -v c="$cpu" -v w="$secs" 'BEGIN { printf "%.2f", c / w }')
    rss=$(awk -v k="$rss_kb" 'BEGIN { printf "%.1f", k / 1024 }')
    case $what in
      relman) t_relman+=("$secs") c_relman+=("$cpu") u_relman+=("$util") m_relman_rss+=("$rss") ;;
      sha) t_sha+=("$secs") c_sha+=("$cpu") u_sha+=("$util") m_sha_rss+=("$rss") ;;
      par) t_shapar+=("$secs") c_shapar+=("$cpu") u_shapar+=("$util") m_shapar_rss+=("$rss") ;;
    esac
  done
  say "  hash run $i/$RUNS: relman ${t_relman[-1]} s (CPU ${u_relman[-1]}× wall), sha256sum ${t_sha[-1]} s, sha256sum -P$(nproc) ${t_shapar[-1]} s"
done

# The single-core reference, measured in the same run right after the hashing: the two-core
# limit is twice its rate.
ossl_gbps=""
if command -v openssl >/dev/null; then
  say "hashing: openssl speed -evp sha256 (single core)"
  ossl=$(openssl speed -evp sha256 -bytes 16384 -seconds 2 2>/dev/null | awk '/^sha256|^SHA256/ { v = $NF } END { print v }')
  [[ -n "$ossl" ]] && ossl_gbps=$(awk -v v="${ossl%k}" 'BEGIN { printf "%.2f", v * 1000 / 1e9 }')
fi

# --- copying ----------------------------------------------------------------------------
copy_relman() {
  "$RELMAN" --root "$ROOT" build --source "$TREE" --id "$1" --json 2>/dev/null || die "relman build failed"
}
copy_cp() { cp -a "$TREE" "$WORK/cp-$1"; }

say "copying: warm-up"
copy_relman warmup >/dev/null
copy_cp warmup
declare -a t_build=() t_copy=() t_cp=()
for ((i = 1; i <= RUNS; i++)); do
  if ((i % 2)); then order=(relman cp); else order=(cp relman); fi
  for what in "${order[@]}"; do
    # Nothing dirty left from the previous step: its writeback would land in this one.
    sync
    start=$(now)
    case $what in
      relman) out=$(copy_relman "copy-$i") ;;
      cp) copy_cp "$i" ;;
    esac
    secs=$(elapsed "$start" "$(now)")
    case $what in
      relman)
        t_build+=("$secs")
        t_copy+=("$(awk -v ms="$(printf '%s' "$out" | json_get durations_ms.copy)" 'BEGIN { printf "%.3f\n", ms / 1000 }')")
        ;;
      cp) t_cp+=("$secs") ;;
    esac
  done
  say "  copy run $i/$RUNS: relman copy step ${t_copy[-1]} s (build ${t_build[-1]} s), cp -a ${t_cp[-1]} s"
done
say "deleting the copies"
cleanup_all
trap - EXIT

# --- report -----------------------------------------------------------------------------
gbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.2f\n", b / 1e9 / s }'; }
row() { # label, times...
  local label=$1; shift
  printf '| %s | %s | %s–%s |' "$label" "$(median "$@")" "$(minimum "$@")" "$(maximum "$@")"
}

m_relman=$(median "${t_relman[@]}"); m_sha=$(median "${t_sha[@]}"); m_shapar=$(median "${t_shapar[@]}")
# Paired ratios: each run's A / B, so that drift across runs (the machine is shared) cancels.
paired() { # NAME_A NAME_B -> median of A[i] / B[i]
  local -n a=$1 b=$2
  local i out=()
  for i in "${!a[@]}"; do out+=("$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { printf "%.3f", x / y }')"); done
  median "${out[@]}"
}
p_hash=$(paired t_sha t_relman)
p_copy=$(paired t_copy t_cp)
p_build=$(paired t_build t_cp)
m_copy=$(median "${t_copy[@]}"); m_build=$(median "${t_build[@]}"); m_cp=$(median "${t_cp[@]}")

echo "## Release store: hashing and copying"
echo
machine_info
printf -- '- tree: %s files (%s hashed), %s dirs, %s symlinks, %s bytes (%.0f MB), seed %s\n' \
  "$tree_files" "$hashed_files" "$tree_dirs" "$tree_links" "$tree_bytes" \
  "$(awk -v b="$tree_bytes" 'BEGIN { print b / 1e6 }')" "$SEED"
printf -- '- %s interleaved runs each, page cache warm (one untimed run of each first)\n' "$RUNS"
echo
echo "### Hashing ($hashed_bytes bytes)"
echo
# GB/s as a percentage of the two-core limit (2 × openssl's single-core rate).
of_limit() { # GB/s -> "NN%", or n/a without openssl
  if [[ -z "$ossl_gbps" ]]; then echo "n/a"; return; fi
  awk -v g="$1" -v o="$ossl_gbps" 'BEGIN { printf "%.0f%%\n", 100 * g / (2 * o) }'
}
hash_row() { # label, NAME (relman, sha or shapar): the times, CPU and RSS arrays of that side
  local -n t=t_$2 c=c_$2 u=u_$2 r=m_$2_rss
  local g
  g=$(gbps "$hashed_bytes" "$(median "${t[@]}")")
  printf '%s %s | %s | %.2f | %.2f | %.1f |\n' "$(row "$1" "${t[@]}")" "$g" "$(of_limit "$g")" \
    "$(median "${c[@]}")" "$(median "${u[@]}")" "$(median "${r[@]}")"
}
echo "| what | median s | min–max s | GB/s (median) | of the two-core limit | CPU s (median) | CPU / wall (median) | peak RSS MB (median) | vs sha256sum |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
echo "$(hash_row '`relman verify ID`' relman) $(ratio "$m_sha" "$m_relman")× |"
echo "$(hash_row '`find … \| xargs -0 sha256sum`' sha) 1.00× |"
echo "$(hash_row "\`find … \\| xargs -0 -P $(nproc) -n 500 sha256sum\` (reference)" shapar) $(ratio "$m_sha" "$m_shapar")× |"
echo
if [[ -n "$ossl_gbps" ]]; then
  echo "Single-core reference, measured right after the hashing runs: \`openssl speed -evp sha256 -bytes 16384 -seconds 2\` = ${ossl_gbps} GB/s ($(openssl version | cut -d' ' -f1-2)); the two-core limit is twice that, $(awk -v o="$ossl_gbps" 'BEGIN { printf "%.2f", 2 * o }') GB/s."
  echo
fi
echo "Target: relman ≥ 4× sha256sum's throughput: $(awk -v r="$(ratio "$m_sha" "$m_relman")" 'BEGIN { print (r >= 4 ? "met" : "MISSED") }') ($(ratio "$m_sha" "$m_relman")× by the medians; median of the per-run ratios $(printf '%.2f' "$p_hash")×)."
echo
g_relman=$(gbps "$hashed_bytes" "$m_relman")
rss_relman=$(printf '%.1f' "$(median "${m_relman_rss[@]}")")
if [[ -n "$ossl_gbps" ]]; then
  met=$(awk -v g="$g_relman" -v o="$ossl_gbps" -v r="$rss_relman" 'BEGIN { print (g >= o && r < 30 ? "met" : "MISSED") }')
  echo "Target: \`relman verify\` at ≥ 50% of the two-core limit with peak RSS under 30 MB: $met ($(of_limit "$g_relman"), $rss_relman MB)."
  echo
fi
echo "### Copying ($tree_files files, $tree_bytes bytes)"
echo
echo "| what | median s | min–max s | vs \`cp -a\` |"
echo "| --- | ---: | ---: | ---: |"
echo "$(row '`relman build --source TREE`: `copy` step' "${t_copy[@]}") $(ratio "$m_copy" "$m_cp")× |"
echo "$(row '`relman build --source TREE`: whole command' "${t_build[@]}") $(ratio "$m_build" "$m_cp")× |"
echo "$(row '`cp -a TREE DEST`' "${t_cp[@]}") 1.00× |"
echo
echo "Target: the copy step within 1.1× of \`cp -a\`: $(awk -v r="$(ratio "$m_copy" "$m_cp")" 'BEGIN { print (r <= 1.1 ? "met" : "MISSED") }') ($(ratio "$m_copy" "$m_cp")× by the medians; median of the per-run ratios $(printf '%.2f' "$p_copy")×, whole build $(printf '%.2f' "$p_build")×). The whole build also hashes the tree, writes the manifest and syncs the filesystem before sealing."
echo
