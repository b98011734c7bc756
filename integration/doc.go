// Package integration holds black-box tests that drive the coffer binary:
// they create a key file and a volume, mount it on a temporary directory and
// run real programs (tar, git, sqlite3, cp, rsync, sed, dd) inside the mount,
// comparing every result with the same work done on a plain directory or with
// checksums computed outside the mount.
//
// The tests need root, /dev/fuse and fusermount3. Without them they are
// skipped, unless the CI environment variable is set, in which case they
// fail. Run them with `make integration` or
// `go test ./integration/ -count=1`.
package integration
