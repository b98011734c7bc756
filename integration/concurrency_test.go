//go:build linux

package integration

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConcurrentWriters starts several processes at once that write
// disjoint parts of one file and append lines to another file opened with
// O_APPEND, while other processes read the first file again and again.
// Writers use pwrite (the shared file not sized beforehand, so writes past
// the end race with the gap filling), dd, or a shared writable mmap (whose
// writeback is not serialised by the kernel). Readers must never fail nor see
// a byte that is neither zero nor its writer's; afterwards, and again after a
// remount, every byte must be its writer's and every line must be there
// exactly once and unbroken.
func TestConcurrentWriters(t *testing.T) {
	requireTools(t, "dd")
	const writers, readers = 6, 2
	tests := []struct {
		name   string
		layout layout
		chunk  int64
		chunks int
		lines  int
		dd     bool // pwrite writers are dd conv=notrunc processes
		mmap   int  // writers 0..mmap-1 write through mmap; the file is sized first
	}{
		// Ranges of 1 MiB + 257*3 bytes: neighbours share a block.
		{name: "ranges", layout: ranges, chunk: 4099, chunks: 257, lines: 300},
		// Stripes of 1000 bytes: every block is shared by 4-6 writers.
		{name: "interleaved stripes", layout: stripes, chunk: 1000, chunks: 400, lines: 300},
		{name: "stripes, two writers through mmap", layout: stripes, chunk: 1000, chunks: 400,
			lines: 300, mmap: 2},
		{name: "ranges, dd conv=notrunc", layout: ranges, chunk: 4099, chunks: 257, dd: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newVolume(t)
			base := childSpec{layout: tc.layout, data: v.path("shared.bin"), append: v.path("append.log"),
				n: writers, chunk: tc.chunk, chunks: tc.chunks}
			if tc.mmap > 0 {
				require.NoError(t, os.WriteFile(base.data, nil, 0o644))
				require.NoError(t, os.Truncate(base.data, base.size()))
			}

			var cmds []*exec.Cmd
			var appenders []int
			for w := 0; w < writers; w++ {
				s := base
				s.role, s.writer = "pwrite", w
				switch {
				case w < tc.mmap:
					s.role = "mmap"
				case tc.dd:
					cmds = append(cmds, ddWriter(t, s))
					continue
				default:
					s.lines = tc.lines
					if s.lines > 0 {
						appenders = append(appenders, w)
					}
				}
				cmds = append(cmds, s.command())
			}
			readerCmds := make([]*exec.Cmd, readers)
			for r := range readerCmds {
				s := base
				s.role = "read"
				readerCmds[r] = s.command()
			}
			stopReaders := startAll(t, readerCmds)
			waitAll(t, startAll(t, cmds), cmds)
			waitAll(t, stopReaders, readerCmds)

			check := func(t *testing.T) {
				checkShared(t, base)
				if len(appenders) > 0 {
					checkAppended(t, base.append, appenders, tc.lines)
				}
			}
			check(t)
			v.remount(t)
			check(t)
		})
	}
}

// ddWriter returns a dd process that writes writer s.writer's range from a
// source file prepared outside the mount, once its stdin closes.
func ddWriter(t *testing.T, s childSpec) *exec.Cmd {
	size := s.chunk * int64(s.chunks)
	off := int64(s.writer) * size
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = stripeByte(s.writer, off+int64(i))
	}
	src := filepath.Join(t.TempDir(), "range")
	require.NoError(t, os.WriteFile(src, buf, 0o644))
	return exec.Command("bash", "-c", `cat >/dev/null && exec dd if="$1" of="$2" bs=$3 seek=$4 `+
		`oflag=seek_bytes conv=notrunc,fsync status=none`, "dd-writer", src, s.data,
		strconv.FormatInt(s.chunk, 10), strconv.FormatInt(off, 10))
}

// startAll starts every command with a pipe on its stdin and returns a
// function that closes all the pipes at once.
func startAll(t *testing.T, cmds []*exec.Cmd) func() {
	t.Helper()
	pipes := make([]io.WriteCloser, len(cmds))
	for i, cmd := range cmds {
		var err error
		pipes[i], err = cmd.StdinPipe()
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = &bytes.Buffer{}, &bytes.Buffer{}
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
	}
	return func() {
		for _, p := range pipes {
			require.NoError(t, p.Close())
		}
	}
}

// waitAll releases the commands started by startAll and waits for them.
func waitAll(t *testing.T, release func(), cmds []*exec.Cmd) {
	t.Helper()
	release()
	for _, cmd := range cmds {
		assert.NoError(t, cmd.Wait(), "%s: %s", strings.Join(cmd.Args[:2], " "), cmd.Stderr)
	}
}

// checkShared checks that every byte of the shared file is its writer's.
func checkShared(t *testing.T, s childSpec) {
	t.Helper()
	data, err := os.ReadFile(s.data)
	require.NoError(t, err)
	require.Equal(t, s.size(), int64(len(data)), "size of the shared file")
	n := s.n

	bad := make([]int, n)
	zero := make([]int, n)
	first := make([]int64, n)
	for off, b := range data {
		w := s.layout.owner(int64(off), n, s.chunk, s.chunks)
		if b == stripeByte(w, int64(off)) {
			continue
		}
		if bad[w] == 0 {
			first[w] = int64(off)
		}
		bad[w]++
		if b == 0 {
			zero[w]++
		}
	}
	for w := range bad {
		assert.Zero(t, bad[w], "writer %d: %d wrong bytes (%d of them zero), first at offset %d",
			w, bad[w], zero[w], first[w])
	}
}

var lineRE = regexp.MustCompile(`^writer=(\d+) line=(\d+) pad=[a-z]+$`)

// checkAppended checks that the append file holds the lines of every
// writer in appenders exactly once, each unbroken.
func checkAppended(t *testing.T, path string, appenders []int, lines int) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(string(data), "\n"), "the append file ends mid-line")

	seen := map[[2]int]int{}
	var broken []string
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			broken = append(broken, line)
			continue
		}
		w, _ := strconv.Atoi(m[1])
		j, _ := strconv.Atoi(m[2])
		if line+"\n" != appendLine(w, j) {
			broken = append(broken, line)
			continue
		}
		seen[[2]int{w, j}]++
	}
	assert.Zero(t, len(broken), "broken lines, the first: %q", broken[:min(len(broken), 3)])

	var missing, dup []string
	for _, w := range appenders {
		for j := 0; j < lines; j++ {
			switch c := seen[[2]int{w, j}]; {
			case c == 0:
				missing = append(missing, fmt.Sprintf("%d/%d", w, j))
			case c > 1:
				dup = append(dup, fmt.Sprintf("%d/%d x%d", w, j, c))
			}
		}
	}
	assert.Zero(t, len(missing), "missing lines (writer/line), the first: %v", missing[:min(len(missing), 10)])
	assert.Zero(t, len(dup), "duplicated lines, the first: %v", dup[:min(len(dup), 10)])
	assert.Len(t, seen, len(appenders)*lines, "distinct lines")
}
