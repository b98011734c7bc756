#!/usr/bin/env bash
# fuzz-quick.sh runs every Fuzz target of the module for a short time each
# (default 10s), one target at a time as go test requires.
set -euo pipefail

fuzztime=${1:-10s}
go=${GO:-go}

# go test -list prints a package's matching names, then "ok <package> <time>".
listing=$("$go" test -list '^Fuzz' ./...)
pairs=$(awk '
	/^Fuzz/ { names[++n] = $1; next }
	/^ok/   { for (i = 1; i <= n; i++) print $2, names[i]; n = 0 }
' <<<"$listing")

count=0
while read -r pkg target; do
	[[ -n "$pkg" ]] || continue
	echo "fuzz-quick: $pkg $target for $fuzztime"
	"$go" test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
	count=$((count + 1))
done <<<"$pairs"
echo "fuzz-quick: $count targets run"
