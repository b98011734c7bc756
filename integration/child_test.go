//go:build linux

package integration

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The test binary re-executes itself as a helper process for the concurrency
// test when COFFER_IT_CHILD is set: `integration.test ROLE FLAGS`, where
// ROLE is "pwrite" or "mmap" (a writer), "read" (a checker) or "lock".
// Writers wait for their stdin to close, so that all start at once, then
// write their chunks of -data and, for pwrite, append -lines lines to
// -append. Readers read -data again and again until their stdin closes,
// checking every byte. A locker ("lock") takes a -kind (flock or posix) write
// lock on -data, says "locked" on stdout and holds the lock until its stdin
// closes; "trylock" tries once without waiting and prints the outcome.

// layout says which bytes of the shared file each of n writers owns.
type layout string

const (
	// ranges gives writer w the contiguous range [w*chunk*chunks, (w+1)*chunk*chunks).
	ranges layout = "ranges"
	// stripes interleaves the writers: chunk k of the file belongs to writer k%n.
	stripes layout = "stripes"
)

// chunkOffset is the offset of chunk k of writer w.
func (l layout) chunkOffset(w, n, k int, chunk int64, chunks int) int64 {
	if l == ranges {
		return (int64(w)*int64(chunks) + int64(k)) * chunk
	}
	return (int64(k)*int64(n) + int64(w)) * chunk
}

// owner returns which writer owns offset off.
func (l layout) owner(off int64, n int, chunk int64, chunks int) int {
	if l == ranges {
		return int(off / (chunk * int64(chunks)))
	}
	return int((off / chunk) % int64(n))
}

// stripeByte is the byte writer w puts at offset off of the shared file.
func stripeByte(w int, off int64) byte {
	return byte(off*131+int64(w)*17) ^ byte(off>>9)
}

// appendLine is line j of writer w: self-describing, with a deterministic
// padding of varying length so lines straddle block boundaries.
func appendLine(w, j int) string {
	n := 40 + (w*7919+j*104729)%700
	pad := strings.Repeat(string(rune('a'+(w+j)%26)), n)
	return fmt.Sprintf("writer=%d line=%05d pad=%s\n", w, j, pad)
}

// childSpec is the work of one helper process.
type childSpec struct {
	role   string // "pwrite", "mmap", "read", "lock" or "trylock"
	kind   string // "flock" or "posix", for "lock"
	layout layout
	data   string
	append string
	writer int
	n      int
	chunk  int64
	chunks int
	lines  int
	// signalAfter is the chunk after which a pwrite writer prints "started".
	signalAfter int
}

// command returns the helper process for s; the caller starts it and closes
// its stdin to let it go (writers) or stop (readers).
func (s childSpec) command() *exec.Cmd {
	cmd := exec.Command(os.Args[0], s.role, "-kind", s.kind, "-layout", string(s.layout), "-data", s.data,
		"-append", s.append, "-writer", strconv.Itoa(s.writer), "-n", strconv.Itoa(s.n),
		"-chunk", strconv.FormatInt(s.chunk, 10), "-chunks", strconv.Itoa(s.chunks),
		"-lines", strconv.Itoa(s.lines), "-signal-after", strconv.Itoa(s.signalAfter))
	cmd.Env = append(os.Environ(), childEnv+"=1")
	return cmd
}

// size is the final size of the shared file.
func (s childSpec) size() int64 { return int64(s.n) * s.chunk * int64(s.chunks) }

// runChild is the entry point of a helper process; it returns the exit code.
func runChild(args []string) int {
	s, err := parseChild(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: %v\n", err)
		return 2
	}
	switch s.role {
	case "pwrite":
		err = childPwrite(s)
	case "mmap":
		err = childMmap(s)
	case "read":
		err = childRead(s)
	case "lock":
		err = childLock(s)
	case "trylock":
		err = childTryLock(s)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "child %s %d: %v\n", s.role, s.writer, err)
		return 1
	}
	return 0
}

func parseChild(args []string) (childSpec, error) {
	var s childSpec
	if len(args) == 0 {
		return s, errors.New("missing role")
	}
	s.role = args[0]
	fs := flag.NewFlagSet(s.role, flag.ContinueOnError)
	fs.StringVar(&s.kind, "kind", "", "")
	fs.StringVar((*string)(&s.layout), "layout", string(ranges), "")
	fs.StringVar(&s.data, "data", "", "")
	fs.StringVar(&s.append, "append", "", "")
	fs.IntVar(&s.writer, "writer", 0, "")
	fs.IntVar(&s.n, "n", 1, "")
	fs.Int64Var(&s.chunk, "chunk", 1, "")
	fs.IntVar(&s.chunks, "chunks", 0, "")
	fs.IntVar(&s.lines, "lines", 0, "")
	fs.IntVar(&s.signalAfter, "signal-after", 0, "")
	if err := fs.Parse(args[1:]); err != nil {
		return s, err
	}
	switch s.role {
	case "pwrite", "mmap", "read", "lock", "trylock":
	default:
		return s, fmt.Errorf("unknown role %q", s.role)
	}
	return s, nil
}

// chunkData returns chunk k of the writer.
func (s childSpec) chunkData(k int) (int64, []byte) {
	off := s.layout.chunkOffset(s.writer, s.n, k, s.chunk, s.chunks)
	buf := make([]byte, s.chunk)
	for i := range buf {
		buf[i] = stripeByte(s.writer, off+int64(i))
	}
	return off, buf
}

// childPwrite writes the chunks with pwrite, alternating with appends.
func childPwrite(s childSpec) error {
	data, err := os.OpenFile(s.data, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("failed to open data file: %w", err)
	}
	defer data.Close()
	var app *os.File
	if s.lines > 0 {
		if app, err = os.OpenFile(s.append, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
			return fmt.Errorf("failed to open append file: %w", err)
		}
		defer app.Close()
	}

	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		return fmt.Errorf("failed to wait for the start: %w", err)
	}
	for k := 0; k < s.chunks || k < s.lines; k++ {
		if k < s.chunks {
			off, buf := s.chunkData(k)
			if _, err := data.WriteAt(buf, off); err != nil {
				return fmt.Errorf("failed to write chunk %d: %w", k, err)
			}
			if k == s.signalAfter {
				fmt.Println("started")
			}
		}
		if k < s.lines {
			if _, err := app.WriteString(appendLine(s.writer, k)); err != nil {
				return fmt.Errorf("failed to append line %d: %w", k, err)
			}
		}
	}
	if err := data.Sync(); err != nil {
		return fmt.Errorf("failed to sync data file: %w", err)
	}
	if app != nil {
		return app.Sync()
	}
	return nil
}

// childMmap writes the chunks through a shared mapping of the whole file,
// which must already have its final size, with an msync every few chunks so
// that writeback runs while the other writers write.
func childMmap(s childSpec) error {
	f, err := os.OpenFile(s.data, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("failed to open data file: %w", err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, int(s.size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("failed to map data file: %w", err)
	}
	defer unix.Munmap(mem)

	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		return fmt.Errorf("failed to wait for the start: %w", err)
	}
	for k := 0; k < s.chunks; k++ {
		off, buf := s.chunkData(k)
		copy(mem[off:], buf)
		if k%8 == 7 || k == s.chunks-1 {
			if err := unix.Msync(mem, unix.MS_SYNC); err != nil {
				return fmt.Errorf("failed to msync after chunk %d: %w", k, err)
			}
		}
	}
	return nil
}

// childRead reads the shared file from a fresh descriptor until stdin
// closes, and fails on any read error or on a byte that is neither zero (not
// written yet) nor its owner's.
func childRead(s childSpec) error {
	var stop atomic.Bool
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop.Store(true)
	}()
	for pass := 0; !stop.Load() || pass < 2; pass++ {
		data, err := os.ReadFile(s.data)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("pass %d: failed to read data file: %w", pass, err)
		}
		if int64(len(data)) > s.size() {
			return fmt.Errorf("pass %d: file is %d bytes, more than %d", pass, len(data), s.size())
		}
		if off := badByte(s, data); off >= 0 {
			return fmt.Errorf("pass %d: wrong byte %#x at offset %d of %d", pass, data[off], off, len(data))
		}
	}
	return nil
}

// badByte returns the first offset whose byte is neither zero nor its
// owner's, or -1.
func badByte(s childSpec, data []byte) int64 {
	for off, b := range data {
		if b != 0 && b != stripeByte(s.layout.owner(int64(off), s.n, s.chunk, s.chunks), int64(off)) {
			return int64(off)
		}
	}
	return -1
}

// childLock holds a write lock on the data file until stdin closes.
func childLock(s childSpec) error {
	f, err := os.OpenFile(s.data, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("failed to open data file: %w", err)
	}
	defer f.Close()
	if err := lockFile(f, s.kind, true); err != nil {
		return err
	}
	fmt.Println("locked")
	_, err = io.Copy(io.Discard, os.Stdin)
	return err
}

// childTryLock tries once to lock the data file and prints the outcome.
func childTryLock(s childSpec) error {
	f, err := os.OpenFile(s.data, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("failed to open data file: %w", err)
	}
	defer f.Close()
	fmt.Println(lockOutcome(lockFile(f, s.kind, false)))
	return nil
}

// lockOutcome names the result of a lock attempt.
func lockOutcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, unix.EWOULDBLOCK), errors.Is(err, unix.EACCES):
		return "busy"
	}
	return err.Error()
}

// lockFile takes an exclusive lock of the given kind on f; with wait false
// it fails at once if another process holds a conflicting lock.
func lockFile(f *os.File, kind string, wait bool) error {
	switch kind {
	case "flock":
		how := unix.LOCK_EX
		if !wait {
			how |= unix.LOCK_NB
		}
		return unix.Flock(int(f.Fd()), how)
	case "posix":
		cmd := unix.F_SETLK
		if wait {
			cmd = unix.F_SETLKW
		}
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
		return unix.FcntlFlock(f.Fd(), cmd, &lk)
	}
	return fmt.Errorf("unknown lock kind %q", kind)
}
