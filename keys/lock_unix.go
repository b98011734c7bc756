//go:build unix

package keys

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockConfig takes the config lock of backing: an exclusive flock on
// .coffer/lock, created with mode 0600 if missing. It waits while another
// process holds it. The lock goes when the returned function is called or
// the process dies, so a crashed admin command never leaves it held.
//
// The lock is a file of its own, not volume.json (which a rename replaces)
// nor the .coffer folder (which a mount holds locked for its lifetime).
func lockConfig(backing string) (func(), error) {
	path := filepath.Join(backing, DirName, LockName)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to open config lock %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("failed to lock volume config: %w", err)
	}
	return func() { f.Close() }, nil
}
