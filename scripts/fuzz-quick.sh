#!/usr/bin/env bash
# fuzz-quick.sh runs every Fuzz target of the module for a fixed number of
# executions each (default 100000x), one target at a time as go test requires.
#
# The budget is a count, never a duration: with -fuzztime 10s, Go 1.26's fuzz
# coordinator can report "context deadline exceeded" as a failure of the
# target when the time runs out while a worker is busy (golang/go#75804,
# fixed in Go 1.27), which failed CI on a loaded machine with no failing
# input. A count has no deadline to race. 100 000 executions take 1 to 5 s
# for most targets here and about 25 s for the stress package's backing-file
# target.
#
# The targets are found in the test files of each package (func FuzzXxx(f
# *testing.F)) rather than with go test -list, which would compile every
# test binary of the module once more just to list them (a minute here).
set -euo pipefail

fuzztime=${1:-100000x}
go=${GO:-go}
if [[ ! "$fuzztime" =~ ^[1-9][0-9]*x$ ]]; then
	echo "fuzz-quick: the budget must be a number of executions such as 100000x, not '$fuzztime' (a duration races Go 1.26's fuzz deadline, golang/go#75804)" >&2
	exit 2
fi

pairs=$("$go" list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do
	grep -hoE '^func Fuzz[A-Za-z0-9_]*\([A-Za-z_]+ \*testing\.F\)' "$dir"/*_test.go 2>/dev/null |
		sed -E "s|^func (Fuzz[A-Za-z0-9_]*).*|$pkg \\1|" || true
done)

count=0
while read -r pkg target; do
	[[ -n "$pkg" ]] || continue
	echo "fuzz-quick: $pkg $target, $fuzztime executions"
	"$go" test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
	count=$((count + 1))
done <<<"$pairs"
if ((count == 0)); then
	echo "fuzz-quick: no fuzz targets found" >&2
	exit 1
fi
echo "fuzz-quick: $count targets run"
