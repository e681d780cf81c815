# Shared helpers for the bench/ scripts; sourced, not run.
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RELMAN="$REPO/target/release/relman"
LOADGEN="$REPO/target/release/loadgen"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# Builds the release binaries unless BENCH_NO_BUILD=1. `--workspace`: a plain
# `cargo build --release --bins` at the root builds only relman, not loadgen.
build_release() {
  if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    say "building release binaries: cargo build --release --workspace --bins"
    (cd "$REPO" && cargo build --release --workspace --bins --quiet) >&2
  fi
  [[ -x "$RELMAN" && -x "$LOADGEN" ]] || die "missing $RELMAN or $LOADGEN; run cargo build --release --workspace --bins"
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
