//go:build unix

package audit

import (
	"os"

	"golang.org/x/sys/unix"
)

// oNoFollow refuses to open a log that is a symbolic link.
const oNoFollow = unix.O_NOFOLLOW

// lockFile takes an exclusive lock on f, waiting for other holders.
func lockFile(f *os.File) error {
	return unix.Flock(int(f.Fd()), unix.LOCK_EX)
}

// unlockFile drops the lock; closing f would drop it too.
func unlockFile(f *os.File) {
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
}
