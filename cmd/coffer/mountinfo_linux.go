package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// fsType is the file system type a coffer mount shows in /proc/self/mountinfo.
const fsType = "fuse.coffer"

// mountEntry is one line of /proc/self/mountinfo, reduced to what we use.
type mountEntry struct {
	mountPoint string
	fsType     string
	source     string
}

// mountInfoPath is a variable so that tests can point it at a fixture.
var mountInfoPath = "/proc/self/mountinfo"

// findMount returns the top-most mount whose mount point is dir (absolute and
// cleaned), or nil if dir is not a mount point.
func findMount(dir string) (*mountEntry, error) {
	entries, err := readMountTable()
	if err != nil {
		return nil, err
	}
	var found *mountEntry
	for i := range entries {
		if entries[i].mountPoint == dir {
			found = &entries[i]
		}
	}
	return found, nil
}

// readMountTable reads the mount table of this process's mount namespace.
func readMountTable() ([]mountEntry, error) {
	f, err := os.Open(mountInfoPath)
	if err != nil {
		return nil, fmt.Errorf("failed to read mount table: %w", err)
	}
	defer f.Close()
	return parseMountInfo(f)
}

// parseMountInfo parses the format described in proc(5):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
func parseMountInfo(r io.Reader) ([]mountEntry, error) {
	var entries []mountEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(fields) {
			return nil, fmt.Errorf("failed to parse mount table line %q", sc.Text())
		}
		entries = append(entries, mountEntry{
			mountPoint: unescapeMountField(fields[4]),
			fsType:     fields[sep+1],
			source:     unescapeMountField(fields[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("failed to read mount table: %w", err)
	}
	return entries, nil
}

// unescapeMountField undoes the kernel's octal escapes (\040 for a space).
func unescapeMountField(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// canonicalPath returns dir as the kernel names it in the mount table:
// absolute, cleaned and with symbolic links resolved. A dead FUSE mount
// cannot be resolved (ENOTCONN), so its parent is resolved instead.
func canonicalPath(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("failed to resolve %s: %w", dir, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err == nil {
		return real, nil
	}
	if !errors.Is(err, syscall.ENOTCONN) {
		return "", fmt.Errorf("failed to resolve %s: %w", dir, err)
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", fmt.Errorf("failed to resolve %s: %w", dir, err)
	}
	return filepath.Join(parent, filepath.Base(abs)), nil
}

// mountsOf lists the mount points where backing is mounted by coffer.
func mountsOf(backing string) ([]string, error) {
	canon, err := canonicalPath(backing)
	if err != nil {
		return nil, err
	}
	entries, err := readMountTable()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.fsType == fsType && e.source == canon {
			out = append(out, e.mountPoint)
		}
	}
	return out, nil
}

// procState is what processState tells of a process.
type procState int

const (
	procRunning procState = iota // running or sleeping
	procStopped                  // stopped by a signal or a tracer
	procGone                     // exited (or a zombie)
)

// procRoot is a variable so that tests can point it at a fixture.
var procRoot = "/proc"

// processState reads the state of process pid from /proc/PID/stat, whose
// third field is the state letter (proc(5)); the command name before it is
// in parentheses and may itself hold spaces and parentheses.
func processState(pid int) procState {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return procGone
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procRunning
	}
	switch b[i+2] {
	case 'T', 't':
		return procStopped
	case 'Z', 'X':
		return procGone
	}
	return procRunning
}
