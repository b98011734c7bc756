#!/usr/bin/env bash
# deps.sh installs the Debian packages given as arguments that are missing,
# and the Go tools listed in go_tools. It runs apt-get and go install only
# when something is missing, so it is cheap to call often.
set -euo pipefail

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Go tools the tests start, installed with go install into $(go env GOPATH)/bin
# when neither PATH nor that folder has them. Pinned: module@version.
go_tools=(
	github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6
)
if command -v go >/dev/null; then
	gobin="$(go env GOBIN)"
	gobin="${gobin:-$(go env GOPATH)/bin}"
	for mod in "${go_tools[@]}"; do
		tool="${mod%@*}"
		tool="${tool##*/}"
		if ! command -v "$tool" >/dev/null && [[ ! -x "$gobin/$tool" ]]; then
			echo "deps: go install $mod"
			go install "$mod"
		fi
	done
fi

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
