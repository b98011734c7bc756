package keys

import (
	"os"

	"golang.org/x/sys/unix"
)

// allocLocked maps n bytes (rounded up to whole pages) of anonymous memory,
// excludes it from core dumps and locks it against swapping. It returns nil
// when the mapping fails, and locked=false when only mlock fails.
func allocLocked(n int) (mem []byte, locked bool) {
	if n == 0 {
		return nil, false
	}
	page := os.Getpagesize()
	size := (n + page - 1) / page * page
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, false
	}
	// Best effort: older kernels lack these advice values.
	_ = unix.Madvise(mem, unix.MADV_DONTDUMP)
	_ = unix.Madvise(mem, unix.MADV_WIPEONFORK)
	return mem, unix.Mlock(mem) == nil
}

// freeLocked zeroes, unlocks and unmaps memory from allocLocked.
func freeLocked(m lockedMem) {
	if m.mem == nil {
		return
	}
	clear(m.mem)
	if m.locked {
		_ = unix.Munlock(m.mem)
	}
	_ = unix.Munmap(m.mem)
}
