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

// LockRotation takes the rotation lock of backing: an exclusive flock on
// .coffer/rotation.lock, created with mode 0600 if missing. It does not
// wait: if another process holds it, it returns ErrRotationRunning.
// coffer rotate holds it for the whole rotation; AddMaster and
// ReplaceMaster hold it shared while they write the config, so that no
// master key joins the volume while a rotation, which seals each ring it
// writes to the master keys it opened, is running (see docs/rotation.md),
// while two adds still run at once. The lock goes when the returned
// function is called or the process dies.
func LockRotation(backing string) (func(), error) {
	return lockRotation(backing, unix.LOCK_EX)
}

// lockRotationShared takes the rotation lock shared, without waiting.
func lockRotationShared(backing string) (func(), error) {
	return lockRotation(backing, unix.LOCK_SH)
}

func lockRotation(backing string, how int) (func(), error) {
	path := filepath.Join(backing, DirName, RotationLockName)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to open rotation lock %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	for {
		err = unix.Flock(fd, how|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, ErrRotationRunning
		}
		return nil, fmt.Errorf("failed to lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
