#!/usr/bin/env bash
# Seeds deliberate bugs into a copy of the tree, one at a time, and runs the simulation on each: a bug the
# simulation catches prints the invariant that caught it; one it misses is a gap in the oracle.
#
#   scripts/mutants.sh [SEEDS]        (default 300 seeds per bug, release build)
#
# Each bug is a Perl substitution on one file; the script checks that it changed the file, so a bug whose
# target moved is reported as `not applied`, never as caught. The copy lives in a temporary directory with a
# target directory of its own (MUTANTS_TARGET, default target/mutants), so the tree is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${1:-300}"
TARGET="${MUTANTS_TARGET:-$PWD/target/mutants}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
git ls-files -z | xargs -0 -I{} cp --parents {} "$WORK"/

# name @@ file @@ perl substitution @@ the harm it stands for (`@@` apart: a pattern may hold `|`)
MUTANTS=(
  "responses-dropped@@src/output/results.rs@@s/out\.push_field\(clean\(&neutralise\(&responses\)\)\.as_bytes\(\)\);/out.push_field(clean(&neutralise(if responses.len() % 3 == 0 { \"\" } else { &responses })).as_bytes());/@@a result lost"
  "margin-cut@@src/settings/merge.rs@@s/let margin = Duration::from_secs\(u64::from\(firstocc\) \* 60\) \+ call_length;/let margin = (Duration::from_secs(u64::from(firstocc) * 60) + call_length) \/ 10;/@@the wrong hour"
  "lost-answer-redialed@@src/engine/call.rs@@s/PlaceError::NotSent\(_\) \| PlaceError::Unsent\(_\) \| PlaceError::Unavailable\(_\) => \{/PlaceError::NotSent(_) | PlaceError::Unsent(_) | PlaceError::Unavailable(_) | PlaceError::Lost(_) => {/@@called twice"
  "retry-is-final@@src/gateway/protocol.rs@@s/\"retry\" => AttemptState::Retry,/\"retry\" => AttemptState::Failed,/@@called twice"
  "rate-doubled@@src/types.rs@@s/Rate::Limited \{ count, per \} => Some\(per \/ count\),/Rate::Limited { count, per } => Some(per \/ count \/ 2),/@@pacing"
  "lines-plus-one@@src/engine/coordinator.rs@@s/free: i64::from\(g\.lines\),/free: i64::from(g.lines) + 1,/@@pacing"
  "touch-end-ignored@@src/rules/touches.rs@@s/self\.due <= now && now < self\.end/self.due <= now/@@the wrong hour"
  "stop-answer-ignored@@src/rules/touches.rs@@s/if stop_on\.is_empty\(\) \{/if true {/@@called twice"
  "window-recheck-dropped@@src/engine/call.rs@@s/&& ctx\.settings\.clock\.now\(\) > by/\&\& false/@@the wrong hour"
)

# violations of a run, as "seed invariant" lines
violations() { grep -o '^seed [0-9]*: violated: [a-z-]*' | sed 's/^seed \([0-9]*\): violated: /\1 /'; }
sim() {
  (cd "$WORK" && CARGO_TARGET_DIR="$TARGET" cargo build --release --test simulation -q 2>/dev/null) || return 1
  local bin
  bin=$(ls -t "$TARGET"/release/deps/simulation-* | grep -v '\.d$' | head -1)
  SIM_SEEDS="$SEEDS" timeout 900 "$bin" 2>&1 | violations || true
}
# The tree as it is: a seed it already fails cannot show a bug (none should, but the count says so).
baseline=$(sim) || { echo "the tree does not build" >&2; exit 1; }
echo "baseline: $(grep -c . <<<"$baseline" || true) of $SEEDS seeds violated"
printf '%-24s %-16s %s\n' "bug" "harm" "simulation"
caught=0; total=0
for m in "${MUTANTS[@]}"; do
  name=${m%%@@*}; rest=${m#*@@}; file=${rest%%@@*}; rest=${rest#*@@}; subst=${rest%@@*}; harm=${rest##*@@}
  total=$((total + 1))
  cp "$file" "$WORK/$file"
  perl -0pi -e "$subst" "$WORK/$file"
  if cmp -s "$file" "$WORK/$file"; then
    printf '%-24s %-16s %s\n' "$name" "$harm" "not applied (its target moved: update this script)"
    continue
  fi
  if ! found=$(sim); then
    printf '%-24s %-16s %s\n' "$name" "$harm" "does not build"
    cp "$file" "$WORK/$file"
    continue
  fi
  # Only seeds the tree itself passes count.
  new=$(grep -v -F -x -f <(printf '%s\n' "$baseline" | grep . || echo '#none') <<<"$found" | grep -v -w -F -f <(cut -d' ' -f1 <<<"$baseline" | grep . || echo '#none') || true)
  if [ -n "$new" ]; then
    caught=$((caught + 1))
    top=$(cut -d' ' -f2 <<<"$new" | sort | uniq -c | sort -rn | head -3 | awk '{printf "%s%s (%s)", sep, $2, $1; sep=", "}')
    printf '%-24s %-16s %s\n' "$name" "$harm" "caught in $(grep -c . <<<"$new") seeds: $top"
  else
    printf '%-24s %-16s %s\n' "$name" "$harm" "MISSED"
  fi
  cp "$file" "$WORK/$file"
done
echo "mutants: $caught of $total caught in $SEEDS seeds"
