#!/usr/bin/env bash
# Reruns the benchmarks and writes docs/benchmarks.md from their output.
#
# usage: bench/all.sh                   every section, in order (~60 min)
#        bench/all.sh scaling history   only those sections; the others keep their last output
#        REPORT_ONLY=1 bench/all.sh     reassemble docs/benchmarks.md, rerunning nothing
#
# Sections, in document order: store deploy next history scaling prune node-modules ship fleet (each
# when its script exists). Each script's Markdown goes to bench/results/NAME.md, which is
# committed: a partial rerun (or a fresh clone) reassembles the whole document from the last
# output of every section, which .bench/ (gitignored, local) could not give. The document is
# then bench/text/intro.md, the machine, and for each section bench/text/NAME.md (its heading
# and setup), the script's output (headings one level down), bench/text/NAME.after.md (what it
# means), and bench/text/raw-data.md. Charts are drawn by the scripts themselves into docs/.
# A section whose script fails keeps its last output; all.sh then exits 1.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

ALL=(store deploy next history scaling prune node-modules ship fleet)
TEXT="$REPO/bench/text"
DOC=${DOC:-$REPO/docs/benchmarks.md}

available=()
for name in "${ALL[@]}"; do [[ -x "$REPO/bench/$name.sh" ]] && available+=("$name"); done
if (($# > 0)); then
  for name in "$@"; do
    [[ " ${available[*]} " == *" $name "* ]] || die "no section \`$name\`: one of ${available[*]}"
  done
  selected=("$@")
else
  selected=("${available[@]}")
fi
[[ "${REPORT_ONLY:-0}" == 1 ]] && selected=()

mkdir -p "$RESULTS_DIR"
failed=()
declare -A took=()
if ((${#selected[@]} > 0)); then
  build_release
  export BENCH_NO_BUILD=1
fi
for name in "${ALL[@]}"; do
  [[ " ${selected[*]} " == *" $name "* ]] || continue
  say "=== bench/$name.sh"
  start=$SECONDS
  if "$REPO/bench/$name.sh" >"$RESULTS_DIR/$name.md.new"; then
    mv "$RESULTS_DIR/$name.md.new" "$RESULTS_DIR/$name.md"
  else
    say "bench/$name.sh failed: its section keeps its last output"
    rm -f "$RESULTS_DIR/$name.md.new"
    failed+=("$name")
  fi
  took[$name]=$((SECONDS - start))
  say "=== bench/$name.sh: $((took[$name] / 60)) min $((took[$name] % 60)) s"
done

# One heading level down, outside code fences: the section's own heading is bench/text's.
demote() { awk '/^```/ { fence = !fence } !fence && /^#+ / { $0 = "#" $0 } { print }' "$1"; }

{
  cat "$TEXT/intro.md"
  echo
  echo "## The machine and this run"
  echo
  machine_info
  printf -- '- root filesystem: %s; Node %s; %s\n' \
    "$(findmnt -n -o FSTYPE,OPTIONS --target "$REPO" | sed -E 's/ +/ (/; s/$/)/')" "$(node --version)" \
    "$(cp --version | head -1 | sed 's/^cp (GNU coreutils)/GNU coreutils/')"
  if ((${#selected[@]} > 0)); then
    ran=""
    for name in "${selected[@]}"; do ran+="${ran:+, }\`$name\` ($((took[$name] / 60)) min $((took[$name] % 60)) s)"; done
    echo "- rerun by \`bench/all.sh${*:+ $*}\`: $ran; every other section is its script's last output, with its own date in its first lines"
  else
    echo "- reassembled by \`REPORT_ONLY=1 bench/all.sh\`: every section is its script's last output, with its own date in its first lines"
  fi
  ((${#failed[@]} == 0)) || echo "- **failed in this run, so left as before**: ${failed[*]}"
  for name in "${ALL[@]}"; do
    [[ -f "$RESULTS_DIR/$name.md" ]] || continue
    echo
    if [[ -f "$TEXT/$name.md" ]]; then
      cat "$TEXT/$name.md"
      echo
      demote "$RESULTS_DIR/$name.md"
    else
      cat "$RESULTS_DIR/$name.md"
    fi
    if [[ -f "$TEXT/$name.after.md" ]]; then
      echo
      cat "$TEXT/$name.after.md"
    fi
  done
  echo
  cat "$TEXT/raw-data.md"
} | cat -s >"$DOC.new"
mv "$DOC.new" "$DOC"
say "wrote $DOC"
((${#failed[@]} == 0)) || die "failed: ${failed[*]}"
