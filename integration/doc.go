//go:build linux

// Package integration holds black-box tests that drive the coffer binary:
// they create a key file and a volume, mount it on a temporary directory and
// run real programs (tar, git, sqlite3, cp, rsync, sed, dd) inside the mount,
// comparing every result with the same work done on a plain directory or with
// checksums computed outside the mount. Other tests tamper with the backing
// files, kill the mount process, and feed the CLI bad input.
//
// The tests need root, /dev/fuse and fusermount3. Without them they are
// skipped, unless the CI environment variable is set, in which case they
// fail. Run them with `make integration` or
// `go test ./integration/ -count=1`.
//
// TestMain builds ./cmd/coffer once. Environment variables change that:
// COFFER_IT_BIN tests a given binary instead, and COFFER_IT_RACE builds it
// with the race detector and fails the run if a mount reports a data race.
package integration
