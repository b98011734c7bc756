//go:build linux

package fs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

// The tests of this file mount one backing directory twice in shared mode.
// Both mounts live in the test process, but share nothing in it but the
// key ring: the open file description locks that coordinate them conflict
// between descriptors, whatever process holds them, exactly as between two
// coffer processes. cmd/coffer's shared tests run real mount processes.

// sharedPair mounts one volume twice with Shared set.
func sharedPair(t *testing.T, encryptNames bool) (v *testVolume, a, b string) {
	t.Helper()
	v = newTestVolume(t)
	v.opts.Shared = true
	v.opts.EncryptNames = encryptNames
	return v, v.mount(t), v.mount(t)
}

// TestSharedMountsSeeEachOther changes files through one mount and reads
// them through the other, including through a descriptor opened before the
// change, against the same changes made to a plain directory.
func TestSharedMountsSeeEachOther(t *testing.T) {
	for _, encrypt := range []bool{false, true} {
		t.Run(fmt.Sprintf("names encrypted %v", encrypt), func(t *testing.T) {
			_, a, b := sharedPair(t, encrypt)
			ref := t.TempDir()
			both := func(f func(root string) error) {
				t.Helper()
				require.NoError(t, f(a))
				require.NoError(t, f(ref))
			}

			long := strings.Repeat("n", 200) // a long name with a sidecar
			both(func(r string) error { return os.MkdirAll(filepath.Join(r, "dir", long), 0o755) })
			both(func(r string) error { return os.WriteFile(filepath.Join(r, "dir", "f"), pattern(1, 3*bs+100), 0o644) })

			// A descriptor on b opened now must see later changes.
			held, err := os.Open(filepath.Join(b, "dir", "f"))
			require.NoError(t, err)
			defer held.Close()
			got := make([]byte, 3*bs+100)
			_, err = held.ReadAt(got, 0)
			require.NoError(t, err)
			assert.Equal(t, pattern(1, 3*bs+100), got)

			// Changes through b: append, truncate, overwrite, rename.
			for _, r := range []string{b, ref} {
				f, err := os.OpenFile(filepath.Join(r, "dir", "f"), os.O_WRONLY|os.O_APPEND, 0)
				require.NoError(t, err)
				_, err = f.Write(pattern(2, 5000))
				require.NoError(t, err)
				require.NoError(t, f.Close())
				require.NoError(t, os.Truncate(filepath.Join(r, "dir", "f"), 2*bs+7))
				f, err = os.OpenFile(filepath.Join(r, "dir", "f"), os.O_WRONLY, 0)
				require.NoError(t, err)
				_, err = f.WriteAt(pattern(3, 100), bs-50)
				require.NoError(t, err)
				require.NoError(t, f.Close())
				require.NoError(t, os.Rename(filepath.Join(r, "dir", "f"), filepath.Join(r, "dir", long, "g")))
			}
			want, err := os.ReadFile(filepath.Join(ref, "dir", long, "g"))
			require.NoError(t, err)

			got = make([]byte, len(want)+10)
			n, err := held.ReadAt(got, 0)
			assert.Equal(t, len(want), n, "the held descriptor sees the new size: %v", err)
			assert.Equal(t, want, got[:n], "the held descriptor sees the new content")
			assert.Equal(t, digests(t, ref), digests(t, a), "mount a")
			assert.Equal(t, digests(t, ref), digests(t, b), "mount b")

			// A file emptied and started over (a new key) through a is
			// read through b's held descriptor with its new key.
			both(func(r string) error {
				return os.WriteFile(filepath.Join(r, "dir", long, "g"), pattern(4, 2*bs), 0o644)
			})
			got = make([]byte, 2*bs)
			_, err = held.ReadAt(got, 0)
			require.NoError(t, err)
			assert.Equal(t, pattern(4, 2*bs), got)
		})
	}
}

// TestSharedConcurrentWriters runs writers on both mounts at once: whole
// blocks into one file, unaligned ranges into another, appends and
// truncations to a third, and files of their own. Afterwards every block
// reads, each whole-block write is whole, and every byte is one a writer
// wrote there.
func TestSharedConcurrentWriters(t *testing.T) {
	v, a, b := sharedPair(t, true)
	const (
		blocks = 16
		rounds = 60
	)
	mounts := []string{a, b}
	require.NoError(t, os.WriteFile(filepath.Join(a, "blocks"), make([]byte, blocks*bs), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(a, "bytes"), make([]byte, blocks*bs), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(a, "grow"), nil, 0o644))

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w, mnt := range mounts {
		wg.Go(func() { errs <- blockWriterLoop(mnt, w, blocks, rounds) })
		wg.Go(func() { errs <- byteWriterLoop(mnt, w, blocks, rounds) })
		wg.Go(func() { errs <- growLoop(mnt, w, rounds) })
		wg.Go(func() {
			p := filepath.Join(mnt, fmt.Sprintf("own-%d", w))
			for i := range rounds {
				if err := os.WriteFile(p, pattern(w*1000+i, 1+i*997%(3*bs)), 0o644); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	for _, mnt := range mounts {
		got, err := readAll(filepath.Join(mnt, "blocks"))
		require.NoError(t, err)
		require.Len(t, got, blocks*bs)
		for blk := range blocks {
			blockBytes := got[blk*bs : (blk+1)*bs]
			assert.Equal(t, bytes.Repeat(blockBytes[:1], bs), blockBytes, "block %d is one write's", blk)
		}

		got, err = readAll(filepath.Join(mnt, "bytes"))
		require.NoError(t, err)
		require.Len(t, got, blocks*bs)
		for i, c := range got {
			if c != 0 && !(c >= 'a' && c <= 'z') {
				t.Fatalf("byte %d is %#x, which no writer wrote", i, c)
			}
		}

		got, err = readAll(filepath.Join(mnt, "grow"))
		require.NoError(t, err)
		for i, c := range got {
			if c != 'A' && c != 'B' && c != 0 {
				t.Fatalf("grow: byte %d of %d is %#x, which no writer wrote", i, len(got), c)
			}
		}
		for w := range mounts {
			got, err := readAll(filepath.Join(mnt, fmt.Sprintf("own-%d", w)))
			require.NoError(t, err)
			assert.Equal(t, pattern(w*1000+rounds-1, 1+(rounds-1)*997%(3*bs)), got)
		}
	}
	assert.NotContains(t, v.logs.String(), `"level":"warn"`, "no integrity warning")
}

// digests returns every entry under root, relative to it, with its mode and
// the SHA-256 of its content.
func digests(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for p, v := range snapshot(t, root) {
		rel, err := filepath.Rel(root, p)
		require.NoError(t, err)
		mode, content, _ := strings.Cut(v, " ")
		sum := sha256.Sum256([]byte(content))
		out[rel] = mode + " " + hex.EncodeToString(sum[:])
	}
	return out
}

// blockWriterLoop writes runs of whole blocks, each filled with one byte
// that names the writer and round.
func blockWriterLoop(mnt string, w, blocks, rounds int) error {
	f, err := os.OpenFile(filepath.Join(mnt, "blocks"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for i := range rounds {
		first := (i*7 + w*3) % blocks
		n := 1 + (i+w)%4
		n = min(n, blocks-first)
		buf := make([]byte, 0, n*bs)
		for k := range n {
			buf = append(buf, bytes.Repeat([]byte{byte(1 + w*100 + (i+k)%100)}, bs)...)
		}
		if _, err := f.WriteAt(buf, int64(first*bs)); err != nil {
			return fmt.Errorf("writer %d round %d: %w", w, i, err)
		}
	}
	return nil
}

// byteWriterLoop writes unaligned ranges of letters: 'a'..'m' from writer
// 0, 'n'..'z' from writer 1.
func byteWriterLoop(mnt string, w, blocks, rounds int) error {
	f, err := os.OpenFile(filepath.Join(mnt, "bytes"), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for i := range rounds {
		off := (i*5003 + w*777) % (blocks*bs - 9000)
		n := 1 + (i*1237+w*311)%9000
		c := byte('a' + w*13 + i%13)
		if _, err := f.WriteAt(bytes.Repeat([]byte{c}, n), int64(off)); err != nil {
			return fmt.Errorf("writer %d round %d: %w", w, i, err)
		}
		if _, err := f.ReadAt(make([]byte, 3*bs), int64(off/bs*bs)); err != nil {
			return fmt.Errorf("reader %d round %d: %w", w, i, err)
		}
	}
	return nil
}

// growLoop appends to and truncates one file from both mounts.
func growLoop(mnt string, w, rounds int) error {
	p := filepath.Join(mnt, "grow")
	c := byte('A' + w)
	for i := range rounds {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.Write(bytes.Repeat([]byte{c}, 1+(i*911)%5000))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("appender %d round %d: %w", w, i, err)
		}
		if i%10 == 9 {
			if err := os.Truncate(p, int64((i*313)%7000)); err != nil {
				return fmt.Errorf("truncater %d round %d: %w", w, i, err)
			}
		}
		if i%25 == 24 {
			if err := os.Truncate(p, 0); err != nil {
				return fmt.Errorf("truncater %d round %d: %w", w, i, err)
			}
		}
	}
	return nil
}

// TestSharedMkdirRace creates the same directories, short- and long-named,
// from both mounts at once: one mkdir wins, the other fails with EEXIST,
// and both mounts then use the one directory.
func TestSharedMkdirRace(t *testing.T) {
	v, a, b := sharedPair(t, true)
	names := []string{"d1", "d2", strings.Repeat("L", 220), strings.Repeat("M", 240)}
	for _, name := range names {
		var wg sync.WaitGroup
		results := make([]error, 2)
		for i, mnt := range []string{a, b} {
			wg.Go(func() { results[i] = os.Mkdir(filepath.Join(mnt, name), 0o755) })
		}
		wg.Wait()
		ok := 0
		for _, err := range results {
			if err == nil {
				ok++
				continue
			}
			assert.True(t, errors.Is(err, os.ErrExist), "the losing mkdir: %v", err)
		}
		assert.Equal(t, 1, ok, "exactly one mkdir of %.10s... succeeds", name)
		require.NoError(t, os.WriteFile(filepath.Join(a, name, "from-a"), []byte("a"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(b, name, "from-b"), []byte("b"), 0o644))
		for _, mnt := range []string{a, b} {
			ents, err := os.ReadDir(filepath.Join(mnt, name))
			require.NoError(t, err)
			require.Len(t, ents, 2)
			assert.Equal(t, "from-a", ents[0].Name())
			assert.Equal(t, "from-b", ents[1].Name())
		}
	}
	ents, err := os.ReadDir(a)
	require.NoError(t, err)
	assert.Len(t, ents, len(names), "one directory per name")
	assert.NotContains(t, v.logs.String(), `"level":"warn"`)
}

// TestSharedAppLocksLeaveDataLocksAlone holds an application lock on a
// whole file (to the end of the file) and writes through both mounts: the
// coordinating locks are beyond the application's range.
func TestSharedAppLocksLeaveDataLocksAlone(t *testing.T) {
	_, a, b := sharedPair(t, false)
	p := filepath.Join(a, "locked")
	require.NoError(t, os.WriteFile(p, pattern(5, bs+10), 0o644))

	// The lock of another open file description than the writers'.
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	require.NoError(t, unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk))

	require.NoError(t, os.WriteFile(filepath.Join(b, "locked"), pattern(6, 3*bs), 0o644))
	got, err := readAll(p)
	require.NoError(t, err)
	assert.Equal(t, pattern(6, 3*bs), got)

	// F_GETLK through the other mount reports the lock as to the end.
	fd2, err := unix.Open(filepath.Join(b, "locked"), unix.O_RDWR|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd2)
	q := unix.Flock_t{Type: unix.F_WRLCK, Start: 100, Len: 10}
	require.NoError(t, unix.FcntlFlock(uintptr(fd2), unix.F_OFD_GETLK, &q))
	assert.Equal(t, int16(unix.F_WRLCK), q.Type)
	assert.Equal(t, int64(0), q.Start)
	assert.Equal(t, int64(0), q.Len, "a lock to the end of the file")

	tooFar := unix.Flock_t{Type: unix.F_RDLCK, Start: content.LockBase, Len: 1}
	assert.ErrorIs(t, unix.FcntlFlock(uintptr(fd2), unix.F_OFD_SETLK, &tooFar), syscall.EINVAL)
}

// TestSharedFlock takes flock(2) locks through both mounts: they exclude
// each other, show up as byte-range locks of the whole application range
// (as they would to another host on NFS), and leave reads and writes alone.
func TestSharedFlock(t *testing.T) {
	_, a, b := sharedPair(t, true)
	require.NoError(t, os.WriteFile(filepath.Join(a, "f"), pattern(7, bs), 0o644))
	fa, err := unix.Open(filepath.Join(a, "f"), unix.O_RDWR|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fa)
	fb, err := unix.Open(filepath.Join(b, "f"), unix.O_RDWR|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fb)

	require.NoError(t, unix.Flock(fa, unix.LOCK_EX|unix.LOCK_NB))
	assert.ErrorIs(t, unix.Flock(fb, unix.LOCK_SH|unix.LOCK_NB), unix.EWOULDBLOCK)
	q := unix.Flock_t{Type: unix.F_RDLCK, Start: 5, Len: 1}
	require.NoError(t, unix.FcntlFlock(uintptr(fb), unix.F_OFD_GETLK, &q))
	assert.Equal(t, int16(unix.F_WRLCK), q.Type, "the flock is a byte-range lock")
	assert.Equal(t, int64(0), q.Len, "of the whole file")

	_, err = unix.Pwrite(fb, []byte("written under another's flock"), 10)
	require.NoError(t, err)
	_, err = unix.Pwrite(fa, []byte("by the holder"), 100)
	require.NoError(t, err)

	require.NoError(t, unix.Flock(fa, unix.LOCK_UN))
	require.NoError(t, unix.Flock(fb, unix.LOCK_SH|unix.LOCK_NB))
	require.NoError(t, unix.Flock(fa, unix.LOCK_SH|unix.LOCK_NB), "shared flocks share")
}

// TestLockRanges checks the backing ranges changes lock, against offsets
// worked out by hand from the format (docs/format.md): a header, then
// blocks of 4096 plaintext bytes stored with a nonce and a tag each.
func TestLockRanges(t *testing.T) {
	hdr, cb := int64(content.HeaderSize), int64(cbs)
	full3 := sizes{cipher: hdr + 3*cb, plain: 3 * bs}                             // three full blocks
	part := sizes{cipher: hdr + 2*cb + 100 + content.Overhead, plain: 2*bs + 100} // a partial third block
	require.Equal(t, content.CipherSize(3*bs), full3.cipher)
	require.Equal(t, content.CipherSize(2*bs+100), part.cipher)

	tests := []struct {
		name       string
		sz         sizes
		off, end   int64
		start, lim int64
	}{
		{"new file", sizes{}, 10, 20, 0, 0},
		{"overwrite of full blocks", full3, bs + 1, 2*bs - 1, hdr + cb, hdr + 2*cb},
		{"overwrite of the last full block", full3, 2 * bs, 3 * bs, hdr + 2*cb, hdr + 3*cb},
		{"append after full blocks", full3, 3 * bs, 3*bs + 1, hdr + 3*cb, 0},
		{"write into the partial block", part, 2*bs + 1, 2*bs + 2, hdr + 2*cb, 0},
		{"write past the end", part, 9 * bs, 9*bs + 1, hdr + 2*cb, 0},
		{"write across into the partial block", part, 10, 2*bs + 1, hdr, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end := writeRange(tt.sz, tt.off, tt.end)
			assert.Equal(t, tt.start, start)
			assert.Equal(t, tt.lim, end)
		})
	}

	for _, tt := range []struct {
		name        string
		sz          sizes
		size, start int64
	}{
		{"to zero", full3, 0, 0},
		{"shrink into a block", full3, bs + 5, hdr + cb},
		{"grow", part, 5 * bs, hdr + 2*cb},
	} {
		t.Run("truncate "+tt.name, func(t *testing.T) {
			start, end := truncRange(tt.sz, tt.size)
			assert.Equal(t, tt.start, start)
			assert.Equal(t, int64(0), end, "to the end")
		})
	}
}

// TestSharedMmap writes a file through a shared writable mapping in a
// child process, as direct I/O mounts allow with DIRECT_IO_ALLOW_MMAP, and
// reads the change through the other mount.
func TestSharedMmap(t *testing.T) {
	_, a, b := sharedPair(t, false)
	p := filepath.Join(a, "mapped")
	orig := pattern(8, 2*bs+300)
	require.NoError(t, os.WriteFile(p, orig, 0o644))
	marker := "SHARED-MMAP-MARKER"
	want := append([]byte(nil), orig...)
	copy(want[bs-4:], marker)

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), helperEnv+"=mmap", "MMAP_PATH="+p, "MMAP_MARKER="+marker,
		fmt.Sprintf("MMAP_OFFSETS=%d", bs-4))
	child.Stdin = strings.NewReader("sync\n")
	out, err := child.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "mapped\n", string(out))

	got, err := readAll(filepath.Join(b, "mapped"))
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

// TestSharedAppend appends records from both mounts at once, each through
// one long-lived O_APPEND descriptor whose kernel learns nothing of the
// other mount's appends: every record must land once, whole, and none be
// overwritten.
func TestSharedAppend(t *testing.T) {
	_, a, b := sharedPair(t, true)
	require.NoError(t, os.WriteFile(filepath.Join(a, "log"), nil, 0o644))
	const records = 60
	record := func(w, i int) []byte {
		r := fmt.Sprintf("mount %d record %03d ", w, i)
		return []byte(r + strings.Repeat(string(rune('a'+w)), 99-len(r)) + "\n")
	}

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for w, mnt := range []string{a, b} {
		wg.Go(func() {
			f, err := os.OpenFile(filepath.Join(mnt, "log"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				errs[w] = err
				return
			}
			defer f.Close()
			for i := range records {
				if _, err := f.Write(record(w, i)); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))

	for _, mnt := range []string{a, b} {
		got, err := readAll(filepath.Join(mnt, "log"))
		require.NoError(t, err)
		require.Len(t, got, 2*records*100, "every append lands past the others")
		seen := map[string]int{}
		for line := range bytes.SplitSeq(bytes.TrimSuffix(got, []byte("\n")), []byte("\n")) {
			seen[string(line)+"\n"]++
		}
		for w := range 2 {
			for i := range records {
				assert.Equal(t, 1, seen[string(record(w, i))], "record %d of mount %d", i, w)
			}
		}
	}
}

// TestSharedUndoRecovery kills (in effect) a shared mount in the middle of
// an overwrite: its undo record carries its tag, another shared mount
// reads the cut block as its last complete version without writing it
// back under its read lock, and its next write of the block repairs it.
func TestSharedUndoRecovery(t *testing.T) {
	v := newTestVolume(t)
	v.opts.Shared = true
	path := filepath.Join(v.backing, "f")
	old := pattern(1, 3*bs)

	writer := newFilesystem(v.backing, v.opts)
	h := openTestHandle(t, writer, "f")
	_, err := h.writeAt(old, 0)
	require.NoError(t, err)
	before := readBacking(t, path)
	_, err = h.writeAt(pattern(2, bs), bs)
	require.NoError(t, err)
	after := readBacking(t, path)
	c, err := h.cipher()
	require.NoError(t, err)
	record := filepath.Join(v.backing, ReservedName, content.UndoDir, content.UndoTagName(c.FileID(), undoTag()))
	require.FileExists(t, record, "the record is named with the mount's tag")

	start := content.BlockOffset(1)
	cut := (start/content.TearUnit + 1) * content.TearUnit
	torn := tornState(before, after, cut)
	require.NoError(t, os.WriteFile(path, torn, 0o600))

	reader := newFilesystem(v.backing, v.opts)
	h2 := openTestHandle(t, reader, "f")
	got := make([]byte, 3*bs)
	n, err := h2.readAt(got, 0)
	require.NoError(t, err)
	require.Equal(t, 3*bs, n)
	assert.Equal(t, old, got, "the cut block reads as its last complete version")
	assert.Equal(t, torn, readBacking(t, path), "a reader does not write the block back")
	assertWarned(t, v, path, float64(1))

	_, err = h2.writeAt([]byte("repaired"), bs+5)
	require.NoError(t, err)
	want := append([]byte(nil), old...)
	copy(want[bs+5:], "repaired")
	n, err = h2.readAt(got, 0)
	require.NoError(t, err)
	assert.Equal(t, want, got[:n])
	fresh := newFilesystem(v.backing, v.opts)
	require.NoError(t, os.Remove(record)) // no record: the block must read on its own now
	n, err = openTestHandle(t, fresh, "f").readAt(got, 0)
	require.NoError(t, err)
	assert.Equal(t, want, got[:n])
}

// TestSharedUndoFileStartedOver: another mount truncates a file to 0, and
// this mount's next write starts it over under a new file ID. Its record of
// the old file ID serves nothing any more and is removed then, not left
// until the mount ends (one leaked record per truncation before).
func TestSharedUndoFileStartedOver(t *testing.T) {
	v := newTestVolume(t)
	v.opts.Shared = true
	undoDir := filepath.Join(v.backing, ReservedName, content.UndoDir)

	writer := newFilesystem(v.backing, v.opts)
	writer.undoTag = "writer-1" // the other mount's records have another tag
	h := openTestHandle(t, writer, "f")
	truncater := newFilesystem(v.backing, v.opts)
	h2 := openTestHandle(t, truncater, "f")

	seen := map[content.FileID]bool{}
	for round := range 4 {
		_, err := h.writeAt(pattern(round, 3*bs), 0)
		require.NoError(t, err)
		_, err = h.writeAt(pattern(9, 100), bs+7) // an overwrite: saves a record
		require.NoError(t, err)
		c, err := h.cipher()
		require.NoError(t, err)
		require.False(t, seen[c.FileID()], "round %d: the file was started over", round)
		seen[c.FileID()] = true

		ents, err := os.ReadDir(undoDir)
		require.NoError(t, err)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		assert.Equal(t, []string{content.UndoTagName(c.FileID(), "writer-1")}, names,
			"round %d: only the record of the current file ID", round)

		require.NoError(t, h2.truncate(0))
	}
}
