#!/usr/bin/env bash
# Refreshes the time-zone prefix map from a newer libphonenumber release:
#   scripts/update-timezone-map.sh PATH/TO/map_data.txt RELEASE COMMIT
# then run `cargo test` (the map's own tests check the copy and every zone it names).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: $0 PATH/TO/map_data.txt RELEASE COMMIT}
release=${2:?release, e.g. 9.0.35}
commit=${3:?the libphonenumber commit the file comes from}
# Every data line is prefix|zone[&zone…]; anything else but comments and blank lines means a format change.
if grep -vE '^(#.*|[0-9]+\|[A-Za-z_/+-]+(&[A-Za-z_/+-]+)*|)$' "$src" >/dev/null; then
  echo "unexpected lines in $src:" >&2
  grep -nvE '^(#.*|[0-9]+\|[A-Za-z_/+-]+(&[A-Za-z_/+-]+)*|)$' "$src" | head -5 >&2
  exit 1
fi
cp "$src" data/timezones/map_data.txt
sum=$(sha256sum data/timezones/map_data.txt | cut -d' ' -f1)
old_sum=$(grep -oE '[0-9a-f]{64}' data/timezones/SOURCE.md | head -1)
old_release=$(grep -E '^\| Release' data/timezones/SOURCE.md | sed -E 's/.*\| ([^ |]+) \|$/\1/')
old_commit=$(grep -E '^\| Commit' data/timezones/SOURCE.md | grep -oE '[0-9a-f]{40}')
sed -i "s/$old_sum/$sum/; s/| Release | $old_release |/| Release | $release |/; s/$old_commit/$commit/" data/timezones/SOURCE.md
sed -i "s/(release $old_release)/(release $release)/" NOTICE
sed -i "s/pub const MAP_RELEASE: \&str = \"$old_release\";/pub const MAP_RELEASE: \&str = \"$release\";/" src/zones.rs
echo "map_data.txt is release $release ($sum); run cargo test"
