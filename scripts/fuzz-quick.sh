#!/usr/bin/env bash
# fuzz-quick.sh runs every Fuzz target of the module for a short time each
# (default 10s), one target at a time as go test requires.
#
# The targets are found in the test files of each package (func FuzzXxx(f
# *testing.F)) rather than with go test -list, which would compile every
# test binary of the module once more just to list them (a minute here).
set -euo pipefail

fuzztime=${1:-10s}
go=${GO:-go}

pairs=$("$go" list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do
	grep -hoE '^func Fuzz[A-Za-z0-9_]*\([A-Za-z_]+ \*testing\.F\)' "$dir"/*_test.go 2>/dev/null |
		sed -E "s|^func (Fuzz[A-Za-z0-9_]*).*|$pkg \\1|" || true
done)

count=0
while read -r pkg target; do
	[[ -n "$pkg" ]] || continue
	echo "fuzz-quick: $pkg $target for $fuzztime"
	"$go" test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
	count=$((count + 1))
done <<<"$pairs"
if ((count == 0)); then
	echo "fuzz-quick: no fuzz targets found" >&2
	exit 1
fi
echo "fuzz-quick: $count targets run"
