# Shared helpers for the bench/ scripts; sourced, not run.
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RELMAN="$REPO/target/release/relman"
LOADGEN="$REPO/target/release/loadgen"
BENCHPLOT="$REPO/target/release/benchplot"
# Where the charts go (SVG, embedded in docs/benchmarks.md) and the figures they are drawn from.
PLOT_DIR=${PLOT_DIR:-$REPO/docs}
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/results}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# Builds the release binaries unless BENCH_NO_BUILD=1. `--workspace`: a plain
# `cargo build --release --bins` at the root builds only relman, not loadgen or benchplot.
build_release() {
  if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    say "building release binaries: cargo build --release --workspace --bins"
    (cd "$REPO" && cargo build --release --workspace --bins --quiet) >&2
  fi
  [[ -x "$RELMAN" && -x "$LOADGEN" && -x "$BENCHPLOT" ]] ||
    die "missing $RELMAN, $LOADGEN or $BENCHPLOT; run cargo build --release --workspace --bins"
}

# Installs the pinned PM2 at the repo root when it is missing.
ensure_pm2() {
  if [[ ! -x "$REPO/node_modules/.bin/pm2" ]]; then
    say "node_modules/.bin/pm2 is missing: npm ci at the repo root"
    (cd "$REPO" && npm ci --no-audit --no-fund) >&2
  fi
  PM2="$REPO/node_modules/.bin/pm2"
}

# Seconds since the epoch with microseconds, without a fork.
now() { printf '%s\n' "$EPOCHREALTIME"; }
# elapsed START END -> seconds, 3 decimals
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'; }

# median N1 N2 ... (any count)
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
minimum() { printf '%s\n' "$@" | sort -g | head -1; }
maximum() { printf '%s\n' "$@" | sort -g | tail -1; }
# ratio A B -> A / B with 2 decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f\n", a / b }'; }

# paired RUNS LABEL FN_A ARRAY_A FN_B ARRAY_B: runs `FN_A n` and `FN_B n` for n = 1..RUNS,
# alternating which goes first, a `sync` before each, and appends what each prints (its
# seconds) to the array named ARRAY_A or ARRAY_B.
paired() {
  local runs=$1 label=$2 fn_a=$3 fn_b=$5 n first second side
  local -n times_a=$4 times_b=$6
  for ((n = 1; n <= runs; n++)); do
    first=a second=b
    ((n % 2)) || { first=b second=a; }
    for side in "$first" "$second"; do
      sync
      if [[ $side == a ]]; then times_a+=("$("$fn_a" "$n")"); else times_b+=("$("$fn_b" "$n")"); fi
    done
    say "  $label run $n: ${times_a[-1]} s against ${times_b[-1]} s"
  done
}

# ratios ARRAY_A ARRAY_B: A / B run by run, one per line
ratios() {
  local -n over=$1 under=$2
  local i
  for ((i = 0; i < ${#over[@]}; i++)); do ratio "${over[i]}" "${under[i]}"; done
}

# A JSON field by a dotted path, read from stdin (node is a prerequisite of the project).
json_get() {
  node -e '
    let text = ""; process.stdin.on("data", (d) => (text += d)).on("end", () => {
      let v = JSON.parse(text);
      for (const k of process.argv[1].split(".")) v = v == null ? undefined : v[k];
      console.log(v === undefined || v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
    });' "$1"
}

machine_info() {
  local cpu
  cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
  printf -- '- date (end of the run): %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  printf -- '- machine: %s cores (nproc), %s, %s, kernel %s\n' "$(nproc)" "$cpu" \
    "$(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)" "$(uname -r)"
  printf -- '- load average (1/5/15 min) at start: %s, at end: %s\n' "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# A fresh $WORK (with results/) and a PM2 of its own (PM2_HOME in a temp dir), killed and
# removed on exit together with a running loadgen ($LOADGEN_PID); `pm2 ...` logs to
# $WORK/pm2.log. Needs WORK and PM2 (ensure_pm2) set.
scratch_pm2() {
  rm -rf "$WORK"
  mkdir -p "$WORK/results"
  PM2_HOME=$(mktemp -d "${TMPDIR:-/tmp}/relman-bench-pm2.XXXXXX")
  export PM2_HOME
  LOADGEN_PID=""
  trap 'cleanup_scratch_pm2' EXIT
}
cleanup_scratch_pm2() {
  [[ -n "${LOADGEN_PID:-}" ]] && kill "$LOADGEN_PID" 2>/dev/null || true
  "$PM2" kill >/dev/null 2>&1 || true
  rm -rf "$PM2_HOME"
}
pm2() { "$PM2" "$@" >>"$WORK/pm2.log" 2>&1; }

# A free TCP port on loopback.
free_port() {
  node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# create-next-app's App Router template (the version pinned in the repo's package.json) in $1,
# its lockfile made but nothing installed, its Google Fonts import dropped (these machines
# cannot reach Google) and a /slow route added so requests are in flight during reloads. Logs to
# $2. Needs the repo's node_modules (`npm ci` at the root).
stock_next_app() {
  local src=$1 log=$2
  [[ -x "$REPO/node_modules/.bin/create-next-app" ]] || (cd "$REPO" && npm ci --no-audit --no-fund) >&2
  say "create-next-app into $src"
  "$REPO/node_modules/.bin/create-next-app" "$src" --js --app --no-tailwind --no-eslint --no-biome \
    --no-src-dir --no-react-compiler --import-alias '@/*' --use-npm --disable-git --skip-install \
    --no-agent-feedback --yes >>"$log" 2>&1
  (cd "$src" && npm install --package-lock-only --no-audit --no-fund) >>"$log" 2>&1
  node -e '
    const fs = require("fs"); const f = process.argv[1];
    let t = fs.readFileSync(f, "utf8");
    t = t.replace(/^import .*next\/font\/google.*\n/m, "").replace(/const geist\w+ = \w+\(\{[^}]*\}\);\n\n/g, "")
         .replace(/ className=\{`\$\{geistSans.variable\} \$\{geistMono.variable\}`\}/, "");
    if (/geist/i.test(t)) { console.error("the template changed: " + t); process.exit(1); }
    fs.writeFileSync(f, t);' "$src/app/layout.js"
  mkdir -p "$src/app/slow"
  cp "$REPO/fixtures/stock-next/add/app/slow/route.js" "$src/app/slow/route.js"
}

# plot NAME TITLE X-LABEL Y-LABEL [--log-x] [--log-y]: draws $PLOT_DIR/NAME.svg from
# $RESULTS_DIR/NAME.tsv (a header, then `series<TAB>x<TAB>y` rows) and prints the Markdown
# image, relative to docs/. A missing benchplot (REPORT_ONLY without a build) only skips it.
plot() {
  local name=$1 title=$2 x=$3 y=$4; shift 4
  if [[ ! -x "$BENCHPLOT" ]]; then
    say "no $BENCHPLOT: $name.svg not redrawn (cargo build --release --workspace --bins)"
    return 0
  fi
  mkdir -p "$PLOT_DIR"
  "$BENCHPLOT" "$RESULTS_DIR/$name.tsv" "$PLOT_DIR/$name.svg" --title "$title" --x-label "$x" --y-label "$y" "$@" >&2 ||
    die "benchplot failed on $RESULTS_DIR/$name.tsv"
  say "drew $PLOT_DIR/$name.svg"
  printf '![%s](%s.svg)\n' "$title" "$name"
}

# fabricate_releases ROOT TEMPLATE_ID ID... : copies sealed release TEMPLATE_ID (cp -a, or
# cp -al with LINK=1: hard links, nothing copied but the directories) to each ID, and rewrites
# each copy's seal with its own ID and a creation time one second after the one before it, so
# the IDs list oldest first in the order given. Costs milliseconds per release where `relman
# build` fsyncs and seals (~0.2 s each).
fabricate_releases() {
  local root=$1 template=$2; shift 2
  local id
  for id in "$@"; do
    if [[ "${LINK:-0}" == 1 ]]; then
      cp -al "$root/releases/$template" "$root/releases/$id"
    else
      cp -a "$root/releases/$template" "$root/releases/$id"
    fi
  done
  node -e '
    const fs = require("fs");
    const [releases, template, ...ids] = process.argv.slice(1);
    const seal = JSON.parse(fs.readFileSync(`${releases}/${template}/.relman/release.json`, "utf8"));
    const start = Date.parse(seal.created_at);
    ids.forEach((id, i) => {
      const at = new Date(start + (i + 1) * 1000).toISOString().replace("Z", "000000Z");
      const file = `${releases}/${id}/.relman/release.json`;
      fs.unlinkSync(file); // a hard link would otherwise rewrite the template too
      fs.writeFileSync(file, JSON.stringify({ ...seal, id, created_at: at, sealed_at: at }, null, 2));
    });' "$root/releases" "$template" "$@"
}

# mount_scratch: DATA becomes $WORK/mnt, a scratch ext4 of the script's own in $WORK/fs.img
# (sparse, SCRATCH_GB GB, SCRATCH_INODES inodes, made once and kept between invocations) on a
# loop device with direct I/O, mounted without `discard`; FS_NOTE says so. This machine's root
# filesystem has no journal and is mounted with `discard`: every freed block is discarded there
# and then (~0.2 ms a small file, seconds for a directory tree), so deletions there measure the
# virtual disk. Needs root, mkfs.ext4 and losetup; otherwise (or SCRATCH_FS=0) DATA is $WORK
# on the root filesystem. The caller's EXIT trap calls unmount_scratch.
# shellcheck disable=SC2034 # DATA and FS_NOTE are the caller's
mount_scratch() {
  DATA=$WORK
  FS_NOTE="the root filesystem ($(findmnt -n -o FSTYPE,OPTIONS --target "$WORK" | sed -E 's/ +/, /'))"
  LOOP=""
  if [[ "${SCRATCH_FS:-1}" != 1 || $(id -u) != 0 ]] || ! command -v mkfs.ext4 >/dev/null || ! command -v losetup >/dev/null; then
    return 0
  fi
  mkdir -p "$WORK/mnt"
  # Left mounted or attached by an interrupted run.
  if mountpoint -q "$WORK/mnt"; then umount "$WORK/mnt"; fi
  if [[ -f "$WORK/fs.img" ]]; then
    for stale in $(losetup -j "$WORK/fs.img" -n -O NAME); do losetup -d "$stale" || true; done
  fi
  # Inode tables written now rather than by the kernel's lazy init during the run.
  local mkfs_args=(-q -F -N "$SCRATCH_INODES" -E "lazy_itable_init=0,lazy_journal_init=0")
  local stamp="${SCRATCH_GB}G ${mkfs_args[*]}"
  if [[ ! -f "$WORK/fs.img" || "$(cat "$WORK/fs.stamp" 2>/dev/null)" != "$stamp" ]]; then
    say "making a scratch ext4 in $WORK/fs.img (${SCRATCH_GB} GB, sparse)"
    rm -f "$WORK/fs.img" "$WORK/fs.stamp"
    truncate -s "${SCRATCH_GB}G" "$WORK/fs.img"
    mkfs.ext4 "${mkfs_args[@]}" "$WORK/fs.img"
    printf '%s\n' "$stamp" >"$WORK/fs.stamp"
  fi
  if LOOP=$(losetup -f --show --direct-io=on "$WORK/fs.img") && mount "$LOOP" "$WORK/mnt"; then
    DATA=$WORK/mnt
    FS_NOTE="a scratch ext4 of its own (\`mkfs.ext4 -N $SCRATCH_INODES\`, so with a journal; mounted without \`discard\`) on a loop device with direct I/O over a file in the root filesystem"
  else
    say "could not mount the scratch ext4: measuring on the root filesystem"
    unmount_scratch
  fi
}
unmount_scratch() {
  if mountpoint -q "$WORK/mnt"; then umount "$WORK/mnt" || say "could not unmount $WORK/mnt"; fi
  if [[ -n "${LOOP:-}" ]]; then losetup -d "$LOOP" 2>/dev/null || true; fi
  LOOP=""
}
