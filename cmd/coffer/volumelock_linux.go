package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// lockOffline takes the volume's mount lock for a change that no running
// mount may see half done (what names it: "re-encrypt", "restore"), and
// checks that no mount on another host sharing the backing directory has
// recorded itself: a mount keeps data keys and the key ring in memory and
// would go on writing files under keys the change replaces.
func lockOffline(backing, what string) (*os.File, error) {
	lock, err := lockVolume(backing)
	if err != nil {
		var busy *volumeBusyError
		if errors.As(err, &busy) {
			return nil, withHints(fmt.Errorf("failed to %s: volume %s is mounted: "+
				"unmount first", what, backing), "coffer unmount MOUNTPOINT; 'coffer status "+
				shellQuote(backing)+"' shows where it is mounted")
		}
		return nil, err
	}
	acks, err := keys.MountAcks(backing)
	if err != nil {
		lock.Close()
		return nil, err
	}
	host, _ := os.Hostname()
	var live []string
	for _, a := range acks {
		if why := staleAck(a, backing, host); why != "" {
			// Left by a mount that died, or its PID reused.
			_ = keys.RemoveAck(backing, a.Name)
			fmt.Fprintf(os.Stderr, "coffer: warning: ignored and removed the stale mount record %s: %s\n",
				a.Name, why)
			continue
		}
		live = append(live, fmt.Sprintf("%s pid %d", a.Host, a.PID))
	}
	if len(live) > 0 {
		lock.Close()
		return nil, withHints(fmt.Errorf("failed to %s: volume %s is mounted (%s): "+
			"unmount first", what, backing, strings.Join(live, ", ")),
			"unmount it everywhere; if a host is gone, remove its file in "+
				shellQuote(filepath.Join(backing, keys.DirName, keys.MountsName)))
	}
	return lock, nil
}

// lockRestore is lockOffline for a restore. A backing directory without a
// .coffer folder (which restore recreates) has no mount to refuse.
func lockRestore(backing string) (io.Closer, error) {
	if _, err := os.Stat(filepath.Join(backing, keys.DirName)); errors.Is(err, fs.ErrNotExist) {
		return io.NopCloser(nil), nil
	}
	return lockOffline(backing, "restore")
}
