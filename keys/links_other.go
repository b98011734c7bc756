//go:build !unix

package keys

import iofs "io/fs"

// linkCount returns 1: coffer mounts only on Linux, and fsck does not look
// for hard links elsewhere.
func linkCount(iofs.FileInfo) uint64 { return 1 }
