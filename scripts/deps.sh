#!/usr/bin/env bash
# deps.sh installs the Debian packages given as arguments that are missing.
# It runs apt-get only when something is missing, so it is cheap to call often.
set -euo pipefail

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for pkg in "$@"; do
	installed "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
	exit 0
fi

if ! command -v apt-get >/dev/null; then
	echo "deps: missing packages: ${missing[*]}; install them with your package manager" >&2
	exit 1
fi
if ((EUID != 0)); then
	echo "deps: missing packages: ${missing[*]}" >&2
	echo "deps: run 'sudo make deps' (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
