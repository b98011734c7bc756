package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fuseConfPath is where fusermount3 reads user_allow_other from.
var fuseConfPath = "/etc/fuse.conf"

// checkMountPoint verifies that dir can take a coffer mount: it exists, is a
// directory, is not a mount point already and is empty.
func checkMountPoint(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return withHints(fmt.Errorf("mount point %s does not exist", dir),
			"create it: mkdir "+dir)
	case errors.Is(err, syscall.ENOTCONN):
		return withHints(fmt.Errorf("mount point %s is a FUSE mount whose process has died", dir),
			"clear it: coffer unmount "+dir)
	case err != nil:
		return fmt.Errorf("failed to inspect mount point: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("mount point %s is not a directory", dir)
	}

	if err := checkNotMounted(dir, fi); err != nil {
		return err
	}
	return checkEmpty(dir)
}

// checkNotMounted refuses a dir that is already a mount point: listed in the
// mount table, or on another device than its parent.
func checkNotMounted(dir string, fi fs.FileInfo) error {
	canon, err := canonicalPath(dir)
	if err != nil {
		return err
	}
	m, err := findMount(canon)
	if err != nil {
		return err
	}
	if m == nil {
		parent, err := os.Stat(filepath.Dir(canon))
		if err != nil {
			return fmt.Errorf("failed to inspect parent of mount point: %w", err)
		}
		if sameDevice(fi, parent) || canon == "/" {
			return nil
		}
		m = &mountEntry{fsType: "unknown"}
	}

	err = fmt.Errorf("mount point %s is already a mount point (%s)", dir, m.fsType)
	if m.fsType == fsType {
		return withHints(err, "unmount it first: coffer unmount "+dir)
	}
	return withHints(err, "choose an empty directory that is not mounted")
}

// sameDevice reports whether two files are on the same device.
func sameDevice(a, b fs.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Dev == sb.Dev
}

// checkEmpty refuses a mount point with entries: a mount would hide them.
func checkEmpty(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("failed to open mount point: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("failed to read mount point: %w", err)
	}
	if len(names) > 0 {
		return withHints(fmt.Errorf("mount point %s is not empty", dir),
			"coffer mounts only on an empty directory, so that no files are hidden under the mount")
	}
	return nil
}

// checkNotInside refuses a mount point inside the backing directory: the
// mount would serve its own ciphertext.
func checkNotInside(backing, mountPoint string) error {
	b, err := canonicalPath(backing)
	if err != nil {
		return err
	}
	m, err := canonicalPath(mountPoint)
	if err != nil {
		return err
	}
	if m == b || strings.HasPrefix(m, b+string(filepath.Separator)) {
		return fmt.Errorf("mount point %s is inside the backing directory %s", mountPoint, backing)
	}
	return nil
}

// checkAllowOther verifies that a non-root user may use allow_other:
// fusermount3 refuses it unless /etc/fuse.conf has user_allow_other.
func checkAllowOther(euid int) error {
	if euid == 0 {
		return nil
	}
	f, err := os.Open(fuseConfPath)
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "user_allow_other" {
				return nil
			}
		}
	}
	return withHints(errors.New("option allow_other needs user_allow_other in "+fuseConfPath),
		"as root, add the line 'user_allow_other' to "+fuseConfPath+", or mount as root")
}

// lockMountPoint opens the mount point directory and takes an exclusive
// flock on it, so that the checks of the mount point and the mount itself
// are one step against another coffer mount on the same directory: without
// it, two mounts can both find it empty and unmounted, and stack. The lock is
// on the directory under the mount, which the mount does not hide from the
// open file; it goes away when the file is closed or the process ends.
func lockMountPoint(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		// checkMountPoint reports a missing or unusable mount point.
		return nil, nil
	}
	f := os.NewFile(uintptr(fd), dir)
	// The holder may be a mount process on its way out: "coffer unmount"
	// returns once the mount table no longer lists the mount, a moment
	// before that process exits and drops the lock. So a held lock is
	// retried for up to lockWait; one held longer belongs to a mount in
	// progress.
	deadline := time.Now().Add(lockWait)
	for {
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, withHints(fmt.Errorf("mount point %s is being mounted by another coffer process", dir),
			"wait for it to finish; 'coffer status' then shows the mount, or choose another mount point")
	}
	if err != nil {
		// A directory that takes no flock (an NFS mount without locks, a
		// stale FUSE mount): the checks say what is wrong with it.
		f.Close()
		return nil, nil
	}
	return f, nil
}
