//go:build linux

package fs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

// TestHeaderReadWaitsForRotation stands for a rotation caught between its
// slot write and its wipe: the header's key slots do not open while a
// writer holds the header lock (as fs/rewrap does), and become whole before
// it lets go. The first read of the header fails; the mount must wait for
// the lock, read again and serve the file, not answer EIO.
func TestHeaderReadWaitsForRotation(t *testing.T) {
	v := newTestVolume(t)
	want := bytes.Repeat([]byte("rotation "), 1000)
	writeBacking(t, v, map[string][]byte{"file": want})
	path := filepath.Join(v.backing, "file")

	// The "rotation": a descriptor of its own with the header locked, and
	// both key slots broken.
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	require.NoError(t, setRangeLock(fd, 0, content.HeaderSize, true))
	orig := make([]byte, content.HeaderSize)
	require.NoError(t, preadFull(fd, orig, 0))
	broken := bytes.Clone(orig)
	clear(broken[24:])
	_, err = unix.Pwrite(fd, broken, 0)
	require.NoError(t, err)

	failed := make(chan struct{}, 1)
	hook := func() { failed <- struct{}{} }
	headerRereadHook.Store(&hook)
	defer headerRereadHook.Store(nil)

	h := openTestHandle(t, newFilesystem(v.backing, v.opts), "file")
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	got := make([]byte, len(want)+10)
	go func() {
		n, err := h.readAt(got, 0)
		done <- result{n, err}
	}()

	select {
	case <-failed:
	case r := <-done:
		t.Fatalf("the read returned (%d, %v) without trying the header again", r.n, r.err)
	}
	var st unix.Stat_t
	require.NoError(t, unix.Fstat(fd, &st))
	waitForLockWaiter(t, st.Ino)

	_, err = unix.Pwrite(fd, orig, 0)
	require.NoError(t, err)
	require.NoError(t, fcntlRange(fd, unix.F_UNLCK, 0, content.HeaderSize))
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, want, got[:r.n])
}

// TestHeaderBrokenIsEIO: a header whose slots stay broken after the locked
// read is still an integrity error, named in the log, and the read waits
// for no lock it holds itself.
func TestHeaderBrokenIsEIO(t *testing.T) {
	v := newTestVolume(t)
	writeBacking(t, v, map[string][]byte{"file": []byte("some content")})
	edit(t, filepath.Join(v.backing, "file"), func(b []byte) []byte { clear(b[24:content.HeaderSize]); return b })
	h := openTestHandle(t, newFilesystem(v.backing, v.opts), "file")
	_, err := h.readAt(make([]byte, 100), 0)
	var ie *integrityError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, int64(headerBlock), ie.block)
}

// waitForLockWaiter waits until /proc/locks lists a blocked OFD read lock
// request on inode ino: the reader is parked on the header lock.
func waitForLockWaiter(t *testing.T, ino uint64) {
	t.Helper()
	suffix := fmt.Sprintf(":%d", ino)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/locks")
		require.NoError(t, err)
		for l := range strings.Lines(string(b)) {
			f := strings.Fields(l)
			// "N: -> OFDLCK ADVISORY READ PID MAJ:MIN:INO START END"
			if len(f) >= 8 && f[1] == "->" && f[2] == "OFDLCK" && f[4] == "READ" &&
				strings.HasSuffix(f[6], suffix) {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no read lock request waits on the header: the reader did not wait for the rotation")
}
