#!/usr/bin/env bash
# Refreshes the time-zone prefix map from a newer libphonenumber release:
#   scripts/update-timezone-map.sh PATH/TO/map_data.txt RELEASE SOURCE
# SOURCE says where the file comes from: the libphonenumber commit of resources/timezones/map_data.txt, or the
# phonenumbers package it was written back from (scripts/timezone-map-from-phonenumbers.py). Take the release of
# the number data (src/contacts.rs, NUMBER_DATA_RELEASE), then run `cargo test` (the map's own tests check the
# copy and every zone it names).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: $0 PATH/TO/map_data.txt RELEASE SOURCE}
release=${2:?release, e.g. 9.0.42}
source=${3:?where the file comes from: a libphonenumber commit, or the phonenumbers release it was written from}
case $source in *'|'* | *'\'* | *'&'*) echo "SOURCE must not contain | \\ or &" >&2; exit 1 ;; esac
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
sed -i "s/$old_sum/$sum/; s/| Release | $old_release |/| Release | $release |/; s#^| Source | .* |\$#| Source | $source |#" data/timezones/SOURCE.md
sed -i "s/(release $old_release)/(release $release)/" NOTICE
sed -i "s/pub const MAP_RELEASE: \&str = \"$old_release\";/pub const MAP_RELEASE: \&str = \"$release\";/" src/zones.rs
echo "map_data.txt is release $release ($sum); run cargo test"
