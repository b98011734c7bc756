//go:build linux

package fs

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// With CAP_HANDLE_KILLPRIV_V2 negotiated, the kernel leaves to us what it
// would otherwise do before every write(2): ask for the security.capability
// attribute (a GETXATTR round trip per write) and clear the setuid and
// setgid bits when a process without CAP_FSETID changes a file. It marks
// the requests that must clear them instead: WRITE with WRITE_KILL_SUIDGID,
// SETATTR with FATTR_KILL_SUIDGID (a size change, also for O_TRUNC since we
// do not negotiate atomic O_TRUNC; a chown). A chown also reaches the backing
// file as the daemon's own chown, which clears the bits there; a chown that
// changes nothing (owner and group -1) arrives as a SETATTR that sets
// nothing, which the kernel sends for no other reason. Coffer mounts are
// nosuid, so file capabilities have no effect in them.

// killpriv is the capability the mount asks for; see above.
const killpriv = fuse.CAP_HANDLE_KILLPRIV_V2

// killOnSetattr reports whether a SETATTR of the request ctx belongs to must
// clear the setuid and setgid bits itself: one that sets nothing, or one the
// kernel marked that sets no mode (a chmod says what the mode is to be). A
// chown by root without a size change is left to the daemon's own chown of
// the backing file, which clears exactly what the kernel would for root (tar
// chowns every file it extracts).
func killOnSetattr(ctx context.Context, in *fuse.SetAttrIn) bool {
	v := in.Valid &^ (fuse.FATTR_FH | fuse.FATTR_LOCKOWNER)
	switch {
	case v == 0:
		return true
	case v&fuse.FATTR_KILL_SUIDGID == 0 || v&fuse.FATTR_MODE != 0:
		return false
	case v&fuse.FATTR_SIZE != 0:
		return true
	}
	caller, ok := fuse.FromContext(ctx)
	return !ok || caller.Uid != 0
}

// killRequested reports whether the WRITE request ctx belongs to asked to
// clear the setuid and setgid bits; see flushOwnerFS.Writev.
func (f *filesystem) killRequested(ctx context.Context) bool {
	fc, ok := ctx.(*fuse.Context)
	if !ok {
		return false
	}
	_, ok = f.killWrites.Load(fc.Cancel)
	return ok
}

// killSuidgid clears the setuid bit of the file open as fd, and its setgid
// bit if the file is group-executable or the caller of the request ctx
// belongs to is not in the file's group, as the kernel does for a process
// without CAP_FSETID.
func killSuidgid(ctx context.Context, fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("failed to stat backing file: %w", err)
	}
	mode := st.Mode &^ unix.S_IFMT
	if mode&(unix.S_ISUID|unix.S_ISGID) == 0 {
		return nil
	}
	kept := mode &^ unix.S_ISUID
	if mode&unix.S_ISGID != 0 && (mode&unix.S_IXGRP != 0 || !callerInGroup(ctx, st.Gid)) {
		kept &^= unix.S_ISGID
	}
	if kept == mode {
		return nil
	}
	if err := unix.Fchmod(fd, kept); err != nil {
		return fmt.Errorf("failed to clear setuid and setgid bits: %w", err)
	}
	return nil
}

// killSuidgid is killSuidgid for a regular file without an open handle.
func (n *node) killSuidgid(ctx context.Context) error {
	rel, err := n.rel()
	if err != nil {
		return err
	}
	fd, err := n.fs.openat(rel, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return killSuidgid(ctx, fd)
}

// callerInGroup reports whether the process that sent the request ctx
// belongs to is root or in group gid, by its file system group or its
// supplementary groups. It says no when it cannot tell, which clears the
// setgid bit: the safe side.
func callerInGroup(ctx context.Context, gid uint32) bool {
	caller, ok := fuse.FromContext(ctx)
	switch {
	case !ok:
		return false
	case caller.Uid == 0 || caller.Gid == gid:
		return true
	case caller.Pid == 0:
		return false
	}
	f, err := os.Open("/proc/" + strconv.FormatUint(uint64(caller.Pid), 10) + "/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		groups, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		for _, g := range strings.Fields(groups) {
			if g == strconv.FormatUint(uint64(gid), 10) {
				return true
			}
		}
		return false
	}
	return false
}
