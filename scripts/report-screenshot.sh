#!/usr/bin/env bash
# Renders a campaign report in headless Chromium and saves a screenshot, to check that it displays on its own
# (no network, no external assets). Runs the demo campaign first when no report is given.
#   scripts/report-screenshot.sh [REPORT.html] [OUT.png]
# Needs Debian's chromium (installed here with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
report=${1:-}
out=${2:-report-screenshot.png}
if [ -z "$report" ]; then
  rm -rf campaigns/demo-results.csv.state
  cargo run --release -q -- -q run campaigns/demo.toml || true   # exit 3: the demo has rows that need a person
  cargo run --release -q -- report campaigns/demo.toml >/dev/null
  report=campaigns/demo-results.report.html
fi
if ! command -v chromium >/dev/null; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --window-size=1100,2000 --screenshot="$out" "file://$(realpath "$report")" 2>/dev/null
rm -rf "$profile"
echo "$out"
