package integration

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// The test binary re-executes itself as a writer process for the
// concurrency test: `COFFER_IT_CHILD=1 integration.test LAYOUT DATA APPEND W N
// CHUNK CHUNKS LINES`. It waits for its stdin to close, so that every writer
// starts at once, then writes its CHUNKS chunks of DATA with pwrite and
// appends LINES lines to APPEND, alternating between the two.

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

// writerCommand returns the command for writer w; the caller starts it and
// closes its stdin to let it go.
func writerCommand(l layout, data, appendPath string, w, n int, chunk int64, chunks, lines int,
) *exec.Cmd {
	cmd := exec.Command(os.Args[0], string(l), data, appendPath, strconv.Itoa(w), strconv.Itoa(n),
		strconv.FormatInt(chunk, 10), strconv.Itoa(chunks), strconv.Itoa(lines))
	cmd.Env = append(os.Environ(), childEnv+"=1")
	return cmd
}

// runChild is the entry point of a helper process; it returns the exit code.
func runChild(args []string) int {
	if len(args) != 8 || (args[0] != string(ranges) && args[0] != string(stripes)) {
		fmt.Fprintf(os.Stderr, "child: bad arguments %q\n", args)
		return 2
	}
	if err := childWrite(layout(args[0]), args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "child: %v\n", err)
		return 1
	}
	return 0
}

func childWrite(l layout, args []string) error {
	nums := make([]int64, 5)
	for i, s := range args[2:] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("failed to parse argument %q: %w", s, err)
		}
		nums[i] = v
	}
	w, n, chunk, chunks, lines := int(nums[0]), int(nums[1]), nums[2], int(nums[3]), int(nums[4])

	data, err := os.OpenFile(args[0], os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("failed to open data file: %w", err)
	}
	defer data.Close()
	app, err := os.OpenFile(args[1], os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("failed to open append file: %w", err)
	}
	defer app.Close()

	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		return fmt.Errorf("failed to wait for the start: %w", err)
	}

	buf := make([]byte, chunk)
	for k := 0; k < chunks || k < lines; k++ {
		if k < chunks {
			off := l.chunkOffset(w, n, k, chunk, chunks)
			for i := range buf {
				buf[i] = stripeByte(w, off+int64(i))
			}
			if _, err := data.WriteAt(buf, off); err != nil {
				return fmt.Errorf("failed to write chunk %d: %w", k, err)
			}
		}
		if k < lines {
			if _, err := app.WriteString(appendLine(w, k)); err != nil {
				return fmt.Errorf("failed to append line %d: %w", k, err)
			}
		}
	}
	if err := data.Sync(); err != nil {
		return fmt.Errorf("failed to sync data file: %w", err)
	}
	return app.Sync()
}
