#!/usr/bin/env bash
# demo.sh shows coffer protecting a configuration directory, end to end:
# key file, init, mount, copy in, read back and compare, ciphertext at rest,
# status, remount, unmount. Everything lives in ./demo, which each run
# recreates.
#
#   scripts/demo.sh [--clean] [PATH-TO-COFFER]
#
# --clean only unmounts and removes ./demo.
set -euo pipefail

clean_only=false
if [[ ${1:-} == --clean ]]; then
	clean_only=true
	shift
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
coffer=$(realpath "${1:-$repo/bin/coffer}")
demo=$repo/demo
backing=$demo/backing
mnt=$demo/mnt
app=$mnt/app
key=$demo/master.key
log=$demo/mount.log
sample=$repo/examples/config

if [[ -t 1 ]]; then
	step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
	step() { printf '\n==> %s\n' "$*"; }
fi
run() {
	printf '$ %s\n' "$*"
	"$@"
}
fail() {
	printf '\ndemo: FAILED: %s\n' "$*" >&2
	exit 1
}

is_mounted() { mountpoint -q "$1" 2>/dev/null || [[ $(stat -c %d "$1" 2>&1) == *"not connected"* ]]; }

# unmount_demo drops a mount left on demo/mnt by an earlier, failed run.
unmount_demo() {
	if is_mounted "$mnt"; then
		"$coffer" unmount "$mnt" 2>/dev/null || fusermount3 -u "$mnt" 2>/dev/null ||
			umount -l "$mnt"
	fi
}

on_exit() {
	local status=$?
	if ((status != 0)); then
		unmount_demo || true
		[[ -f $log ]] && printf '\ndemo: last lines of %s:\n%s\n' "$log" "$(tail -n 5 "$log")" >&2
		printf 'demo: failed (exit %d)\n' "$status" >&2
	fi
}
trap on_exit EXIT

if [[ ! -x $coffer ]] && ! $clean_only; then
	fail "$coffer not found: run 'make build' first"
fi

unmount_demo
rm -rf "$demo"
$clean_only && exit 0

step "A fresh demo directory, a master key file, an empty backing directory and mount point"
mkdir -p "$demo"
mkdir -m 700 "$backing" "$mnt"
run "$coffer" keys create "file://$key"
ls -l "$key"

step "Initialise the volume: a key ring sealed by the key file"
run "$coffer" init "$backing" --master "file://$key"

step "Mount it (in the background; the command returns once the mount answers)"
run "$coffer" --log-format console mount "$backing" "$mnt" --log-file "$log"
grep " $mnt " /proc/self/mounts || fail "$mnt is not mounted"

step "Copy the sample configuration into the mount, and generate a TLS key inside it"
run cp -r "$sample" "$app"
mkdir -m 700 "$app/tls"
# The private key goes straight from openssl into the mount: it never exists in
# the clear on disk. Its PEM is kept in memory to compare with what we read back.
tls_key=$(openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null)
printf '%s\n' "$tls_key" >"$app/tls/server.key"
chmod 600 "$app/tls/server.key"
echo "generated $app/tls/server.key with openssl"
(cd "$mnt" && run ls -lR app)

# verify reads every file back through the mount and compares it with its source.
verify() {
	local f
	while IFS= read -r -d '' f; do
		f=${f#"$sample"/}
		cmp -s "$sample/$f" "$app/$f" || {
			diff -u "$sample/$f" "$app/$f" >&2 || true
			fail "app/$f read back through the mount differs from examples/config/$f"
		}
		printf 'identical  app/%s (%d bytes)\n' "$f" "$(stat -c %s "$app/$f")"
	done < <(find "$sample" -type f -print0 | sort -z)
	cmp -s <(printf '%s\n' "$tls_key") "$app/tls/server.key" ||
		fail "app/tls/server.key read back through the mount differs from what openssl wrote"
	openssl pkey -in "$app/tls/server.key" -noout -check >/dev/null 2>&1 ||
		fail "openssl cannot parse app/tls/server.key read through the mount"
	printf 'identical  app/tls/server.key (%d bytes, a valid EC key for openssl)\n' \
		"$(stat -c %s "$app/tls/server.key")"
}

step "Read every file back through the mount and compare it with its source"
verify

step "The same web.config in the backing directory: only ciphertext"
echo "File names are encrypted too; coffer path maps a plaintext path to its backing file:"
run ls -l "$backing"
cipherfile=$("$coffer" path encrypt "$backing" /app/web.config --master "file://$key") ||
	fail "coffer path encrypt could not map /app/web.config"
printf '/app/web.config  ->  %s\n' "$cipherfile"
[[ -f $cipherfile ]] || fail "coffer path encrypt gave $cipherfile, which is not a file"
if find "$backing" -name 'web.config' | grep -q .; then
	fail "the plaintext name web.config appears in the backing directory"
fi
echo "The 280-byte header: magic 'coffer', format version, random file ID, then two"
echo "key slots (ring key ID, generation, the file's data key wrapped by the ring):"
run od -A d -N 64 -t x1z -v "$cipherfile"
echo "Then the content, in blocks of nonce, XChaCha20-Poly1305 ciphertext and tag:"
run od -A d -j 280 -N 96 -t x1z -v "$cipherfile"
for secret in "Password=Tr0ub4dor" "correct-horse-battery-staple" "PRIVATE KEY"; do
	if grep -rqF "$secret" "$backing"; then
		fail "plaintext '$secret' found in the backing directory"
	fi
	echo "not found in backing: '$secret'"
done

step "Volume status (read from the backing directory, no key needed)"
run "$coffer" status "$backing"

step "Unmount, mount again and read everything back from disk"
run "$coffer" unmount "$mnt"
[[ -z $(ls -A "$mnt") ]] || fail "$mnt is not empty after unmount"
echo "$mnt is empty: nothing readable without the key"
run "$coffer" --log-format console mount "$backing" "$mnt" --log-file "$log"
verify
run "$coffer" unmount "$mnt"

step "Demo passed"
echo "demo/ holds the key file, the encrypted backing directory and the mount log;"
echo "mount it again with: bin/coffer mount demo/backing demo/mnt"
