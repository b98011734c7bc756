//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	mountPoint string
	fsType     string
	source     string
	options    string // per-mount options, then the super block's
}

// parseMountinfo parses the format of proc(5)'s /proc/PID/mountinfo.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		e, err := parseMountLine(sc.Text())
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// parseMountLine parses "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] -
// FSTYPE SOURCE SUPEROPTS".
func parseMountLine(line string) (mountEntry, error) {
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 6 || sep < 0 || sep+3 > len(f) {
		return mountEntry{}, fmt.Errorf("failed to parse mountinfo line %q", line)
	}
	return mountEntry{
		mountPoint: unescapeOctal(f[4]),
		fsType:     f[sep+1],
		source:     unescapeOctal(f[sep+2]),
		options:    f[5] + " " + strings.Join(f[sep+3:], " "),
	}, nil
}

// unescapeOctal undoes the kernel's \NNN escaping of space, tab, newline and
// backslash in mountinfo paths.
func unescapeOctal(s string) string {
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

// readMounts returns the mounts of this process's mount namespace.
func readMounts() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("failed to read mount table: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f)
}

// mountAt returns the topmost mount on path, if any.
func mountAt(path string) (mountEntry, bool, error) {
	ms, err := readMounts()
	if err != nil {
		return mountEntry{}, false, err
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].mountPoint == path {
			return ms[i], true, nil
		}
	}
	return mountEntry{}, false, nil
}

// mountsUnder returns the mount points at or below dir.
func mountsUnder(dir string) ([]string, error) {
	ms, err := readMounts()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.mountPoint == dir || strings.HasPrefix(m.mountPoint, dir+string(filepath.Separator)) {
			out = append(out, m.mountPoint)
		}
	}
	return out, nil
}

// mountOf returns the mount holding path: the longest mount point that is a
// prefix of it.
func mountOf(path string) (mountEntry, error) {
	ms, err := readMounts()
	if err != nil {
		return mountEntry{}, err
	}
	best := -1
	for i, m := range ms {
		p := m.mountPoint
		inside := path == p || p == "/" || strings.HasPrefix(path, p+"/")
		if inside && (best < 0 || len(p) >= len(ms[best].mountPoint)) {
			best = i
		}
	}
	if best < 0 {
		return mountEntry{}, fmt.Errorf("failed to find the mount of %s", path)
	}
	return ms[best], nil
}
