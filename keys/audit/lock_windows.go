//go:build windows

package audit

import (
	"math"
	"os"

	"golang.org/x/sys/windows"
)

// oNoFollow is not needed: Windows opens a symbolic link's target only
// with the right privilege.
const oNoFollow = 0

// lockFile takes an exclusive lock on all of f, waiting for other holders.
func lockFile(f *os.File) error {
	var ol windows.Overlapped
	return windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK, 0,
		math.MaxUint32, math.MaxUint32, &ol)
}

// unlockFile drops the lock; closing f would drop it too.
func unlockFile(f *os.File) {
	var ol windows.Overlapped
	_ = windows.UnlockFileEx(windows.Handle(f.Fd()), 0, math.MaxUint32, math.MaxUint32, &ol)
}
