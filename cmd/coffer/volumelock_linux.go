package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/keys"
)

// lockVolume takes an exclusive flock on the backing directory's .coffer
// directory, so that one backing directory is served by one coffer process
// at a time: two mounts would each cache file headers and write them back,
// destroying files. No file is created; the lock goes away with the process
// or when the returned file is closed.
func lockVolume(backing string) (*os.File, error) {
	return lockVolumeMode(backing, false)
}

// lockVolumeMode is lockVolume, or with shared set, takes the flock shared:
// for a mount --shared, which other shared mounts may join and every user
// of the exclusive lock refuses.
func lockVolumeMode(backing string, shared bool) (*os.File, error) {
	dir := filepath.Join(backing, keys.DirName)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to open %s: %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), dir)

	err = flockWait(fd, backing, shared)
	if errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, withHints(&volumeBusyError{backing: backing, shared: shared},
			"'coffer status "+backing+"' shows where it is mounted")
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("failed to lock backing directory: %w", err)
	}
	return f, nil
}

// lockWait bounds how long a mount waits for the lock of a process whose
// mount is already gone: "coffer unmount" returns when the mount table no
// longer lists the mount, a moment before the serving process exits.
const lockWait = 3 * time.Second

// flockWait takes the lock on fd. While it is held and backing is not
// mounted anywhere, the holder is taken to be on its way out and the lock is
// retried for up to lockWait; a held lock of a mounted volume fails at once
// with EWOULDBLOCK.
func flockWait(fd int, backing string, shared bool) error {
	how := unix.LOCK_EX
	if shared {
		how = unix.LOCK_SH
	}
	deadline := time.Now().Add(lockWait)
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			return err
		}
		if mounts, merr := mountsOf(backing); merr != nil || len(mounts) > 0 {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// volumeBusyError reports that another coffer process holds the volume's
// lock: the volume is mounted, or, for shared, held by a process that needs
// it to itself.
type volumeBusyError struct {
	backing string
	shared  bool // the refused lock was a shared mount's
}

func (e *volumeBusyError) Error() string {
	if e.shared {
		return fmt.Sprintf("backing directory %s is in use by a coffer process that needs it to itself "+
			"(a mount without --shared, fsck --repair or rotate --reencrypt)", e.backing)
	}
	return fmt.Sprintf("backing directory %s is already mounted (by another coffer process)", e.backing)
}
