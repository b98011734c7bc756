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
// disjoint parts of one file, which they did not size beforehand, and append
// lines to another file opened with O_APPEND. Afterwards, and again after a
// remount, every byte must be its writer's and every line must be there
// exactly once and unbroken.
func TestConcurrentWriters(t *testing.T) {
	requireTools(t, "dd")
	const writers = 6
	tests := []struct {
		name   string
		layout layout
		chunk  int64
		chunks int
		lines  int
		dd     bool // write with dd conv=notrunc instead of the test binary
	}{
		// Ranges of 1 MiB + 6*977 bytes: neighbours share a block.
		{name: "ranges", layout: ranges, chunk: 4099, chunks: 257, lines: 300},
		// Stripes of 1000 bytes: every block is shared by 4-6 writers.
		{name: "interleaved stripes", layout: stripes, chunk: 1000, chunks: 400, lines: 300},
		{name: "ranges, dd conv=notrunc", layout: ranges, chunk: 4099, chunks: 257, dd: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newVolume(t)
			data, app := v.path("shared.bin"), v.path("append.log")
			cmds := make([]*exec.Cmd, writers)
			for w := range cmds {
				if tc.dd {
					cmds[w] = ddWriter(t, data, w, tc.chunk, tc.chunks)
				} else {
					cmds[w] = writerCommand(tc.layout, data, app, w, writers, tc.chunk, tc.chunks, tc.lines)
				}
			}
			startTogether(t, cmds)

			check := func(t *testing.T) {
				checkShared(t, data, tc.layout, writers, tc.chunk, tc.chunks)
				if tc.lines > 0 {
					checkAppended(t, app, writers, tc.lines)
				}
			}
			check(t)
			v.remount(t)
			check(t)
		})
	}
}

// ddWriter returns a dd process that writes writer w's range from a source
// file prepared outside the mount.
func ddWriter(t *testing.T, data string, w int, chunk int64, chunks int) *exec.Cmd {
	size := chunk * int64(chunks)
	off := int64(w) * size
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = stripeByte(w, off+int64(i))
	}
	src := filepath.Join(t.TempDir(), "range")
	require.NoError(t, os.WriteFile(src, buf, 0o644))
	// dd reads stdin only as the start signal: "if=" names the data.
	return exec.Command("bash", "-c", `cat >/dev/null && exec dd if="$1" of="$2" bs=$3 seek=$4 `+
		`oflag=seek_bytes conv=notrunc,fsync status=none`, "dd-writer", src, data,
		strconv.FormatInt(chunk, 10), strconv.FormatInt(off, 10))
}

// startTogether starts every command, then closes their stdin at once so
// that they begin writing together, and waits for all of them.
func startTogether(t *testing.T, cmds []*exec.Cmd) {
	t.Helper()
	pipes := make([]io.WriteCloser, len(cmds))
	outs := make([]*bytes.Buffer, len(cmds))
	for i, cmd := range cmds {
		var err error
		pipes[i], err = cmd.StdinPipe()
		require.NoError(t, err)
		outs[i] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
	}
	for _, p := range pipes {
		require.NoError(t, p.Close())
	}
	for i, cmd := range cmds {
		assert.NoError(t, cmd.Wait(), "writer %d: %s", i, outs[i])
	}
}

// checkShared checks that every byte of the shared file is its writer's.
func checkShared(t *testing.T, path string, l layout, n int, chunk int64, chunks int) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, int64(n)*chunk*int64(chunks), int64(len(data)), "size of the shared file")

	bad := make([]int, n)
	zero := make([]int, n)
	first := make([]int64, n)
	for off, b := range data {
		w := l.owner(int64(off), n, chunk, chunks)
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

// checkAppended checks that the append file holds every writer's lines
// exactly once, each unbroken.
func checkAppended(t *testing.T, path string, n, lines int) {
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
	for w := 0; w < n; w++ {
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
	assert.Len(t, seen, n*lines, "distinct lines")
}
