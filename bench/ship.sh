#!/usr/bin/env bash
# A fleet of three hosts (tests/fleet/fleet: network namespaces on a bridge, each with its own
# sshd, deploy root and PM2 cluster of two, on this one machine):
#
#   1. Shipping a sealed Next.js release (create-next-app's template with its node_modules) to
#      the three hosts over SSH: `relman pack` once, then `relman receive` on every host at
#      once, the stream through `ssh` (what the Ansible role does, less Ansible), against
#      `rsync -a` of the same release directory to the three hosts at once, over the same SSH.
#      Each run ships to fresh destinations, interleaved, a `sync` before each.
#   2. A whole fleet deploy of the fixture app through the Ansible role (build once, pack,
#      ship, activate host by host) against the sum of three single-host deploys
#      (`relman deploy` on each host in turn, each building for itself).
#
# The hosts share this machine's disk and CPU and their network is a bridge in its kernel, so
# the figures are what the tools cost, not what a real network adds.
#
# usage: bench/ship.sh     (RUNS=3; needs root; installs rsync, openssh-server, nginx and
#                           ansible-core like the fleet test, and the npm registry once)
# Everything lives under $TMPDIR/relman-bench-ship/ (BENCH_DIR). Markdown on stdout.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-3}
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/relman-bench-ship}
FLEET="$REPO/tests/fleet/fleet"
export FLEET_DIR="$WORK/fleet"
export NEXT_TELEMETRY_DISABLED=1
HOSTS=(web1 web2 web3)

[[ $(id -u) == 0 ]] || die "bench/ship.sh needs root (network namespaces)"
build_release
export RELMAN_BIN="$RELMAN"
command -v rsync >/dev/null || {
  say "apt-get install rsync"
  apt-get install -y -qq rsync >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq rsync >/dev/null; }
}
"$FLEET" setup >&2
FLEET_DIR="$WORK/fleet" "$FLEET" down >/dev/null 2>&1 || true
rm -rf "$WORK" && mkdir -p "$WORK"
trap '"$FLEET" down >/dev/null 2>&1 || true' EXIT
"$FLEET" up >/dev/null
SSH=(ssh -F "$FLEET_DIR/ssh/config" -o BatchMode=yes)

# The Next.js release, built once on the build host.
BUILD="$WORK/build"
stock_next_app "$WORK/app" "$WORK/setup.log"
"$RELMAN" --root "$BUILD" init >>"$WORK/setup.log" 2>&1
printf '[build]\ninstall = "npm ci --no-audit --no-fund"\n' >"$BUILD/relman.toml"
say "building the Next.js release (npm ci, next build)"
"$RELMAN" --root "$BUILD" build --source "$WORK/app" --id next >>"$WORK/build.log" 2>&1 || die "build failed: $WORK/build.log"
REL="$BUILD/releases/next"
files=$(find "$REL" -type f | wc -l)
rel_kib=$(du -sk "$REL" | cut -f1)

# relman: pack once into a file, then each host receives it through ssh, all at once.
ship_relman() { # run number; prints seconds
  local n=$1
  local start pack="$WORK/next-$n.relman" pids=() host
  start=$(now)
  "$RELMAN" --root "$BUILD" pack next --output "$pack" 2>/dev/null
  for host in "${HOSTS[@]}"; do
    "${SSH[@]}" "$host" "$FLEET_DIR/$host/bin/relman receive --root $WORK/dest/relman-$n-$host" \
      <"$pack" >/dev/null 2>>"$WORK/receive.log" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || die "receive failed: $WORK/receive.log"; done
  elapsed "$start" "$(now)"
}
ship_rsync() {
  local n=$1 start pids=() host
  start=$(now)
  for host in "${HOSTS[@]}"; do
    rsync -a -e "${SSH[*]}" "$REL/" "$host:$WORK/dest/rsync-$n-$host/" 2>>"$WORK/rsync.log" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || die "rsync failed: $WORK/rsync.log"; done
  elapsed "$start" "$(now)"
}
# Each receiving root is a deploy root of its own (a host's, empty of releases).
for ((n = 1; n <= RUNS; n++)); do
  for host in "${HOSTS[@]}"; do "$RELMAN" --root "$WORK/dest/relman-$n-$host" init >/dev/null 2>&1; done
done

relman_s=() rsync_s=()
paired "$RUNS" "ship, relman against rsync -a:" ship_relman relman_s ship_rsync rsync_s
pack_bytes=$(stat -c %s "$WORK/next-1.relman")
for host in "${HOSTS[@]}"; do
  "${SSH[@]}" "$host" "$FLEET_DIR/$host/bin/relman verify next --root $WORK/dest/relman-1-$host" >/dev/null 2>&1 \
    || die "the release received on $host does not verify"
done

# A whole fleet deploy through the role against three single-host deploys.
fleet_s=() single_s=()
for ((n = 1; n <= RUNS; n++)); do
  src=$("$FLEET" build "f$n" healthy)
  start=$(now)
  "$FLEET" play -e "relman_build_source=$src" -e "relman_build_id=f$n" >"$WORK/play-$n.log" 2>&1 || die "play failed: $WORK/play-$n.log"
  fleet_s+=("$(elapsed "$start" "$(now)")")
  src=$("$FLEET" build "s$n" healthy)
  start=$(now)
  for host in "${HOSTS[@]}"; do
    "$FLEET" relman "$host" deploy --source "$src" --id "s$n" >>"$WORK/single.log" 2>&1 || die "deploy on $host failed: $WORK/single.log"
  done
  single_s+=("$(elapsed "$start" "$(now)")")
  say "  deploy run $n: fleet (role) ${fleet_s[-1]} s, 3 single-host deploys ${single_s[-1]} s"
done

mapfile -t ratios < <(ratios relman_s rsync_s)
mapfile -t dratios < <(ratios fleet_s single_s)
mib() { awk -v k="$1" 'BEGIN { printf "%.1f\n", k / 1024 }'; }

cat <<EOF
$(machine_info)
- the release: create-next-app's template built with \`npm ci\` and \`next build\`, $files files, $(mib "$rel_kib") MiB (\`du\`, node_modules included); its stream $(mib $((pack_bytes / 1024))) MiB (zstd level 3)
- hosts: three network namespaces on a bridge, sshd in each (ControlPersist), the disk and the two cores shared

| ship to 3 hosts at once | median s | min–max s | vs \`rsync -a\` |
| --- | ---: | ---: | ---: |
| \`relman pack\` once + \`ssh HOST relman receive\` ×3 | $(median "${relman_s[@]}") | $(minimum "${relman_s[@]}")–$(maximum "${relman_s[@]}") | $(median "${ratios[@]}")× |
| \`rsync -a\` ×3 over ssh | $(median "${rsync_s[@]}") | $(minimum "${rsync_s[@]}")–$(maximum "${rsync_s[@]}") | 1.00× |

| deploy the fixture app to 3 hosts | median s | min–max s | vs 3 single-host deploys |
| --- | ---: | ---: | ---: |
| the Ansible role: build once, pack, ship, activate host by host | $(median "${fleet_s[@]}") | $(minimum "${fleet_s[@]}")–$(maximum "${fleet_s[@]}") | $(median "${dratios[@]}")× |
| \`relman deploy\` on each host in turn | $(median "${single_s[@]}") | $(minimum "${single_s[@]}")–$(maximum "${single_s[@]}") | 1.00× |

The ratios are medians of the per-run ratios (each run measured both, interleaved).
Every received release verifies against its manifest on every host; \`rsync -a\` checks nothing.
EOF
