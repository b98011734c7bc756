package rewrap

import (
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

// lockHeader takes the write lock on the header of the file open on fd, in
// the lock space of shared mounts (content.LockBase), waiting for a mount
// that is starting the file over. Closing fd releases it.
func lockHeader(fd int) error {
	flk := unix.Flock_t{Type: unix.F_WRLCK, Start: content.LockBase, Len: content.HeaderSize}
	for {
		err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLKW, &flk)
		if err != unix.EINTR {
			return err
		}
	}
}
