package keys

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// allocPages returns page-aligned Go memory of whole pages holding at least
// n bytes, used by nothing else, so that locking and unlocking it cannot
// affect other data. It marks the pages excluded from core dumps and locks
// them; locked is false when mlock fails. It returns nil for n == 0.
//
// Go's garbage collector never moves heap objects, so the pages stay where
// they were locked; slices into them keep the whole allocation alive.
func allocPages(n int) (pages []byte, locked bool) {
	if n == 0 {
		return nil, false
	}
	page := os.Getpagesize()
	size := (n + page - 1) / page * page
	raw := make([]byte, size+page)
	off := (page - int(uintptr(unsafe.Pointer(&raw[0]))%uintptr(page))) % page
	pages = raw[off : off+size : off+size]

	_ = unix.Madvise(pages, unix.MADV_DONTDUMP) // best effort: kernels before 3.4 lack it
	return pages, unix.Mlock(pages) == nil
}

// releasePages undoes allocPages once the pages are zeroed.
func releasePages(pages []byte, locked bool) {
	if locked {
		_ = unix.Munlock(pages)
	}
	_ = unix.Madvise(pages, unix.MADV_DODUMP)
}
