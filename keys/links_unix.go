//go:build unix

package keys

import (
	iofs "io/fs"
	"syscall"
)

// linkCount returns the number of names of the file fi describes.
func linkCount(fi iofs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink) //nolint:unconvert // uint32 on some systems
	}
	return 1
}
