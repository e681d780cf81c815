#!/usr/bin/env bash
# A whole fleet deploy of a stock Next.js app (create-next-app's template), on the fleet of
# tests/fleet/fleet (three network namespaces on a bridge, each with its own sshd and PM2):
#
#   the Ansible role of contrib/ansible/: build once on the build host (`npm ci` reused,
#   `next build`), `relman pack`, the stream copied to every host and `relman receive`d there,
#   then `relman activate` host by host;
#   against the sum of three single-host deploys: `relman deploy` on each host in turn, each
#   building the release for itself.
#
# Both sides start warm, as a deploy does on a host that has deployed before: every host (and the
# build host) already has a sealed release of the same app, so `node_modules` is taken from it
# (the lockfile is unchanged) and `.next/cache` too; what remains is `next build`, the copies,
# the checks and the activations. The first deploy (the warm-up) is not timed. Runs alternate
# which side goes first.
#
# usage: bench/fleet.sh     (RUNS=3; needs root; installs openssh-server, nginx and ansible-core
#                            like the fleet test, and the npm registry once, on the build host)
# Everything lives under $TMPDIR/relman-bench-fleet/ (BENCH_DIR). Markdown on stdout.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-3}
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/relman-bench-fleet}
FLEET="$REPO/tests/fleet/fleet"
export FLEET_DIR="$WORK/fleet"
export NEXT_TELEMETRY_DISABLED=1
HOSTS=(web1 web2 web3)
PORT=3001

[[ $(id -u) == 0 ]] || die "bench/fleet.sh needs root (network namespaces)"
build_release
export RELMAN_BIN="$RELMAN"
"$FLEET" setup >&2
# One fleet per machine (its bridge and addresses are fixed): wait for a fleet test or another
# benchmark to end, as the fleet test does.
exec 9>"${TMPDIR:-/tmp}/relman-fleet.lock"
flock 9
"$FLEET" down >/dev/null 2>&1 || true
rm -rf "$WORK" && mkdir -p "$WORK"
trap '"$FLEET" down >/dev/null 2>&1 || true' EXIT
"$FLEET" up >/dev/null
SSH=(ssh -F "$FLEET_DIR/ssh/config" -o BatchMode=yes)

# One configuration for every deploy root: `init --app` once (it generates the app's Server
# Actions key, which the build and every host must share), the same files on each host.
stock_next_app "$WORK/app" "$WORK/setup.log"
BUILD="$WORK/build"
"$RELMAN" --root "$BUILD" init --app next --port "$PORT" --source "$WORK/app" >>"$WORK/setup.log" 2>&1
for host in "${HOSTS[@]}"; do
  root="$FLEET_DIR/$host/next"
  "$RELMAN" --root "$root" init --app next --port "$PORT" --source "$WORK/app" >>"$WORK/setup.log" 2>&1
  for file in relman.toml ecosystem.config.js; do
    sed -e "s|$BUILD|$root|g" -e "s|^\[pm2\]\$|[pm2]\nbin = \"$REPO/node_modules/.bin/pm2\"|" "$BUILD/$file" >"$root/$file"
  done
done
on_host() { # host, relman arguments: relman on the host over its SSH, with its PM2
  local host=$1; shift
  "${SSH[@]}" "$host" "env PM2_HOME=$FLEET_DIR/$host/pm2 PATH=$(dirname "$(command -v node)"):/usr/local/bin:/usr/bin:/bin NEXT_TELEMETRY_DISABLED=1 $FLEET_DIR/$host/bin/relman --root $FLEET_DIR/$host/next $*"
}
play() { # release ID, log
  "$FLEET" play -e "relman_root=$FLEET_DIR/{{ inventory_hostname }}/next" -e "relman_build_root=$BUILD" \
    -e "relman_build_source=$WORK/app" -e "relman_build_id=$1" >"$2" 2>&1
}

say "warm-up: the first fleet deploy of the Next.js app (npm ci, next build, PM2 starts it on every host)"
play warm "$WORK/play-warm.log" || die "the warm-up play failed: $WORK/play-warm.log"
for host in "${HOSTS[@]}"; do
  current=$(on_host "$host" status --json --no-probe | json_get current)
  [[ $current == warm ]] || die "$host runs ${current:-nothing}, not the warm-up release"
done

fleet_s=() single_s=()
fleet_deploy() {
  local n=$1 start
  start=$(now)
  play "f$n" "$WORK/play-$n.log" || die "play failed: $WORK/play-$n.log"
  elapsed "$start" "$(now)"
}
single_deploys() {
  local n=$1 start host
  start=$(now)
  for host in "${HOSTS[@]}"; do
    on_host "$host" deploy --source "$WORK/app" --id "s$n" >>"$WORK/single.log" 2>&1 || die "deploy on $host failed: $WORK/single.log"
  done
  elapsed "$start" "$(now)"
}
paired "$RUNS" "fleet (role) against 3 single-host deploys:" fleet_deploy fleet_s single_deploys single_s
for host in "${HOSTS[@]}"; do
  current=$(on_host "$host" status --json --no-probe | json_get current)
  [[ $current == "f$RUNS" || $current == "s$RUNS" ]] || die "$host runs $current, not the last release"
done
mapfile -t ratios < <(ratios fleet_s single_s)

cat <<EOF
$(machine_info)
- the app: create-next-app's template (its \`node_modules\` reused from the release before, on every host and on the build host), served by PM2 as a cluster of two on each of three hosts: network namespaces on a bridge, sshd in each, the disk and the two cores shared

| deploy a Next.js release to 3 hosts | median s | min–max s | vs 3 single-host deploys |
| --- | ---: | ---: | ---: |
| the Ansible role: build once, pack, ship, activate host by host | $(median "${fleet_s[@]}") | $(minimum "${fleet_s[@]}")–$(maximum "${fleet_s[@]}") | $(median "${ratios[@]}")× |
| \`relman deploy\` on each host in turn | $(median "${single_s[@]}") | $(minimum "${single_s[@]}")–$(maximum "${single_s[@]}") | 1.00× |

The ratio is the median of the per-run ratios (each run measured both, alternating which went first).
EOF
