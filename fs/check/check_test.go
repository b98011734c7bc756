//go:build linux

package check

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	cofferfs "github.com/cofferfs/coffer/fs"
	"github.com/cofferfs/coffer/fs/content"
	"github.com/cofferfs/coffer/keys"
)

// volume builds backing files by hand from docs/format.md, independently
// of package fs.
type volume struct {
	dir  string
	ring *keys.Ring
	id   [16]byte
}

func newVolume(t *testing.T) *volume {
	t.Helper()
	ring, err := keys.NewRing()
	require.NoError(t, err)
	v := &volume{dir: t.TempDir(), ring: ring}
	_, _ = rand.Read(v.id[:])
	require.NoError(t, os.MkdirAll(filepath.Join(v.dir, cofferfs.ReservedName, content.UndoDir), 0o700))
	return v
}

// sealedFile is a backing file's bytes with its cipher.
type sealedFile struct {
	c    *content.Cipher
	id   content.FileID
	data []byte
}

// newFile seals plain as a backing file of v.
func (v *volume) newFile(t *testing.T, plain []byte) *sealedFile {
	t.Helper()
	var id content.FileID
	_, _ = rand.Read(id[:])
	dek := make([]byte, content.DEKSize)
	_, _ = rand.Read(dek)
	keyID, wrapped, err := v.ring.Wrap(dek, func(keyID uint32) []byte {
		return content.SlotAD(v.id, id, keyID, 1)
	})
	require.NoError(t, err)
	h := &content.Header{Version: content.Version, FileID: id}
	h.Slots[0] = content.Slot{KeyID: keyID, Generation: 1, Wrapped: wrapped}
	data, err := h.MarshalBinary()
	require.NoError(t, err)
	c, err := content.NewCipher(dek, id)
	require.NoError(t, err)
	for off := 0; off < len(plain); off += bs {
		data = c.Seal(data, plain[off:min(off+bs, len(plain))], uint64(off/bs))
	}
	return &sealedFile{c: c, id: id, data: data}
}

// block returns the bytes of block b.
func (f *sealedFile) block(b int64) []byte {
	at := content.BlockOffset(uint64(b))
	return f.data[at:min(at+cbs, int64(len(f.data)))]
}

// overwrite returns the file with block b rewritten (new nonce), and the
// undo record such a write leaves, holding b's old bytes.
func (f *sealedFile) overwrite(b int64, plain []byte) (*sealedFile, []byte) {
	at := content.BlockOffset(uint64(b))
	old := append([]byte(nil), f.block(b)...)
	out := append([]byte(nil), f.data[:at]...)
	out = f.c.Seal(out, plain, uint64(b))
	out = append(out, f.data[at+int64(len(old)):]...)
	rec := content.AppendUndoHeader(nil, f.id, uint64(b), int64(len(f.data)), len(old))
	return &sealedFile{c: f.c, id: f.id, data: out}, append(rec, old...)
}

func (v *volume) write(t *testing.T, name string, data []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(v.dir, name), data, 0o600))
}

func (v *volume) writeUndo(t *testing.T, id content.FileID, rec []byte) {
	t.Helper()
	v.write(t, filepath.Join(cofferfs.ReservedName, content.UndoDir, content.UndoName(id)), rec)
}

func (v *volume) run(t *testing.T, repair bool) *Report {
	t.Helper()
	r, err := Run(v.dir, Options{VolumeID: v.id, Keys: v.ring, Repair: repair})
	require.NoError(t, err)
	return r
}

func plain(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7) + byte(i/bs)
	}
	return b
}

// cutAt returns after's bytes up to cut and before's from there on.
func cutAt(before, after []byte, cut int64) []byte {
	return append(append([]byte(nil), after[:cut]...), before[cut:]...)
}

// firstBoundary is the first page boundary inside block b.
func firstBoundary(b int64) int64 {
	return (content.BlockOffset(uint64(b))/content.TearUnit + 1) * content.TearUnit
}

func TestCleanVolume(t *testing.T) {
	v := newVolume(t)
	v.write(t, "a", v.newFile(t, plain(1, 3*bs+10)).data)
	require.NoError(t, os.Mkdir(filepath.Join(v.dir, "d"), 0o700))
	v.write(t, "d/b", v.newFile(t, plain(2, 1)).data)
	v.write(t, "d/empty", nil)
	f := v.newFile(t, plain(3, 2*bs))
	g, rec := f.overwrite(1, plain(4, bs))
	v.write(t, "c", g.data)
	v.writeUndo(t, f.id, rec) // a completed overwrite: the record is not needed

	r := v.run(t, false)
	assert.Empty(t, r.Problems)
	assert.Empty(t, r.StaleUndo)
	assert.False(t, r.Damaged())
	assert.Equal(t, 4, r.Files)
	assert.Equal(t, int64(4+1+2), r.Blocks)
}

// TestProblems builds each kind of damage and checks what is reported, what
// the repair does to the file, and that a second run finds nothing left
// (or, for lost data, the same).
func TestProblems(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T, v *volume) // writes "f"
		want  []Problem                     // Backing "f" and Detail are not compared
		after func(t *testing.T, v *volume, data []byte)
		left  bool // damage remains after the repair
	}{
		{
			name: "overwrite of a middle block cut by a crash",
			build: func(t *testing.T, v *volume) {
				f := v.newFile(t, plain(1, 4*bs))
				g, rec := f.overwrite(2, plain(9, bs))
				v.write(t, "f", cutAt(f.data, g.data, firstBoundary(2)))
				v.writeUndo(t, f.id, rec)
				v.write(t, "old", f.data)
			},
			want: []Problem{{Block: 2, Kind: KindBlock, Repair: RepairRestore}},
			after: func(t *testing.T, v *volume, data []byte) {
				assert.Equal(t, readFile(t, v, "old"), data, "the old block is back")
			},
		},
		{
			name: "overwrite cut by a crash of a shared mount, whose record has its tag",
			build: func(t *testing.T, v *volume) {
				f := v.newFile(t, plain(1, 4*bs))
				g, rec := f.overwrite(1, plain(9, bs))
				v.write(t, "f", cutAt(f.data, g.data, firstBoundary(1)))
				v.write(t, filepath.Join(cofferfs.ReservedName, content.UndoDir,
					content.UndoName(f.id)+".web1-4242"), rec)
				// Another mount's record of the file, of another block.
				_, other := f.overwrite(3, plain(8, bs))
				v.write(t, filepath.Join(cofferfs.ReservedName, content.UndoDir,
					content.UndoName(f.id)+".web2-77"), other)
				v.write(t, "old", f.data)
			},
			want: []Problem{{Block: 1, Kind: KindBlock, Repair: RepairRestore}},
			after: func(t *testing.T, v *volume, data []byte) {
				assert.Equal(t, readFile(t, v, "old"), data, "the old block is back")
			},
		},
		{
			name: "damaged middle block",
			build: func(t *testing.T, v *volume) {
				f := v.newFile(t, plain(1, 4*bs))
				f.data[content.BlockOffset(1)+50] ^= 0x80
				v.write(t, "f", f.data)
			},
			want: []Problem{{Block: 1, Kind: KindBlock, Repair: RepairNone}},
			left: true,
		},
		{
			name: "damaged middle block with an older pre-image",
			build: func(t *testing.T, v *volume) {
				f := v.newFile(t, plain(1, 4*bs))
				g, rec := f.overwrite(1, plain(9, bs))
				g.data[content.BlockOffset(1)+50] ^= 0x80
				v.write(t, "f", g.data)
				v.writeUndo(t, f.id, rec)
			},
			want: []Problem{{Block: 1, Kind: KindBlock, Repair: RepairNone}},
			left: true,
		},
		{
			name: "torn tail",
			build: func(t *testing.T, v *volume) {
				f := v.newFile(t, plain(1, 3*bs))
				v.write(t, "f", f.data[:content.BlockOffset(2)+20])
			},
			want: []Problem{{Block: 2, Kind: KindTornTail, Repair: RepairTruncate}},
			after: func(t *testing.T, _ *volume, data []byte) {
				assert.Len(t, data, int(content.BlockOffset(2)))
			},
		},
		{
			name: "last block cut inside",
			build: func(t *testing.T, v *volume) {
				f := v.newFile(t, plain(1, 3*bs))
				v.write(t, "f", f.data[:content.BlockOffset(2)+2000])
			},
			want: []Problem{{Block: 2, Kind: KindBlock, Repair: RepairTruncate}},
			after: func(t *testing.T, _ *volume, data []byte) {
				assert.Len(t, data, int(content.BlockOffset(2)))
			},
		},
		{
			name: "growth of the last block cut past its old end",
			build: func(t *testing.T, v *volume) {
				f := v.newFile(t, plain(1, bs+100)) // block 1 ends at 4516
				g, rec := f.overwrite(1, plain(9, bs))
				v.write(t, "f", g.data[:firstBoundary(1)])
				v.writeUndo(t, f.id, rec)
				v.write(t, "old", f.data)
			},
			want: []Problem{{Block: 1, Kind: KindBlock, Repair: RepairRollback}},
			after: func(t *testing.T, v *volume, data []byte) {
				assert.Equal(t, readFile(t, v, "old"), data, "the file as before the write")
			},
		},
		{
			name: "header of another format",
			build: func(t *testing.T, v *volume) {
				f := v.newFile(t, plain(1, 10))
				f.data[0] = 'x'
				v.write(t, "f", f.data)
			},
			want: []Problem{{Block: -1, Kind: KindHeader, Repair: RepairNone}},
			left: true,
		},
		{
			name: "header of another volume",
			build: func(t *testing.T, v *volume) {
				other := newVolume(t)
				other.ring = v.ring
				v.write(t, "f", other.newFile(t, plain(1, 10)).data)
			},
			want: []Problem{{Block: -1, Kind: KindHeader, Repair: RepairNone}},
			left: true,
		},
		{
			name:  "impossible size",
			build: func(t *testing.T, v *volume) { v.write(t, "f", []byte("short")) },
			want:  []Problem{{Block: -1, Kind: KindSize, Repair: RepairNone}},
			left:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVolume(t)
			tt.build(t, v)
			r := v.run(t, false)
			assert.Equal(t, tt.want, problemsOf(r, "f"))
			assert.True(t, r.Damaged())
			before := readFile(t, v, "f")
			assert.Equal(t, before, readFile(t, v, "f"), "a check without repair changes nothing")

			r = v.run(t, true)
			for i := range tt.want {
				tt.want[i].Repaired = tt.want[i].Repair != RepairNone
			}
			assert.Equal(t, tt.want, problemsOf(r, "f"))
			assert.Equal(t, tt.left, r.Damaged())
			if tt.after != nil {
				tt.after(t, v, readFile(t, v, "f"))
			}
			r = v.run(t, false)
			assert.Equal(t, tt.left, len(problemsOf(r, "f")) > 0, "after the repair: %+v", r.Problems)
		})
	}
}

func TestStaleUndo(t *testing.T) {
	v := newVolume(t)
	f := v.newFile(t, plain(1, 2*bs))
	_, rec := f.overwrite(0, plain(2, bs))
	v.writeUndo(t, f.id, rec) // of a file that is gone
	r := v.run(t, false)
	assert.Empty(t, r.Problems)
	rel := filepath.Join(cofferfs.ReservedName, content.UndoDir, content.UndoName(f.id))
	assert.Equal(t, []string{rel}, r.StaleUndo)
	assert.FileExists(t, filepath.Join(v.dir, rel))

	r = v.run(t, true)
	assert.True(t, r.Pruned)
	assert.NoFileExists(t, filepath.Join(v.dir, rel))
	assert.False(t, r.Damaged())
}

// problemsOf returns the problems of backing file name without details.
func problemsOf(r *Report, name string) []Problem {
	var out []Problem
	for _, p := range r.Problems {
		if p.Backing == name {
			p.Backing, p.Path, p.Detail = "", "", ""
			out = append(out, p)
		}
	}
	return out
}

func readFile(t *testing.T, v *volume, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(v.dir, name))
	require.NoError(t, err)
	return b
}

// TestSharedUndoNames checks that undo records of shared mounts
// (FILEID.TAG) belong to their file: kept while it exists, stale once it is
// gone.
func TestSharedUndoNames(t *testing.T) {
	v := newVolume(t)
	live := v.newFile(t, plain(1, 2*bs))
	v.write(t, "live", live.data)
	gone := v.newFile(t, plain(2, 2*bs))
	undo := filepath.Join(cofferfs.ReservedName, content.UndoDir)
	liveRec := filepath.Join(undo, content.UndoName(live.id)+".host-1")
	goneRec := filepath.Join(undo, content.UndoName(gone.id)+".host-2")
	v.write(t, liveRec, []byte("kept"))
	v.write(t, goneRec, []byte("stale"))

	r := v.run(t, true)
	assert.Equal(t, []string{goneRec}, r.StaleUndo)
	assert.FileExists(t, filepath.Join(v.dir, liveRec))
	assert.NoFileExists(t, filepath.Join(v.dir, goneRec))
}

// TestCheckWaitsForSharedWriter holds a shared mount's write lock on a file
// whose block is half rewritten, as during a write: the check must wait for
// the lock, and then find the finished write.
func TestCheckWaitsForSharedWriter(t *testing.T) {
	v := newVolume(t)
	f := v.newFile(t, plain(1, 3*bs))
	g, _ := f.overwrite(1, plain(5, bs))
	v.write(t, "f", cutAt(f.data, g.data, firstBoundary(1)))

	fd, err := unix.Open(filepath.Join(v.dir, "f"), unix.O_RDWR|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: content.LockBase}
	require.NoError(t, unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk))
	var st unix.Stat_t
	require.NoError(t, unix.Fstat(fd, &st))

	done := make(chan *Report, 1)
	go func() {
		r, err := Run(v.dir, Options{VolumeID: v.id, Keys: v.ring})
		assert.NoError(t, err)
		done <- r
	}()
	// The kernel lists a request waiting for a lock in /proc/locks.
	waiter := fmt.Sprintf(":%d ", st.Ino)
	for {
		select {
		case r := <-done:
			t.Fatalf("the check ran under another's write lock: %+v", r.Problems)
		default:
		}
		b, err := os.ReadFile("/proc/locks")
		require.NoError(t, err)
		if blockedOn(string(b), waiter) {
			break
		}
		runtime.Gosched()
	}

	_, err = unix.Pwrite(fd, g.data, 0) // the write finishes
	require.NoError(t, err)
	lk.Type = unix.F_UNLCK
	require.NoError(t, unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk))
	r := <-done
	assert.Empty(t, r.Problems)
}

// blockedOn reports whether /proc/locks text shows a waiting lock request
// on the inode that ino (":INODE ") names.
func blockedOn(locks, ino string) bool {
	for _, line := range strings.Split(locks, "\n") {
		if strings.Contains(line, "->") && strings.Contains(line, ino) {
			return true
		}
	}
	return false
}

// TestSparseFile checks a backing file grown with holes (truncate -s 8G):
// the holes are reported as one run of lost blocks, without reading them,
// in memory that does not grow with the file's apparent size.
func TestSparseFile(t *testing.T) {
	v := newVolume(t)
	f := v.newFile(t, plain(1, 3*bs))
	v.write(t, "f", f.data)
	const size = 8 << 30
	require.NoError(t, os.Truncate(filepath.Join(v.dir, "f"), size))
	plainSize, torn, err := content.PlainSize(size)
	require.NoError(t, err)
	n := (plainSize + bs - 1) / bs

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := v.run(t, false)
	runtime.ReadMemStats(&after)

	assert.Equal(t, n, r.Blocks)
	got := problemsOf(r, "f")
	require.Len(t, got, 2, "%+v", got)
	assert.Equal(t, int64(3), got[0].Block, "the first block of the hole")
	assert.Equal(t, n-2, got[0].LastBlock, "the run ends before the last block")
	assert.Equal(t, KindBlock, got[0].Kind)
	assert.Equal(t, RepairNone, got[0].Repair)
	assert.Equal(t, zerosDetail, r.Problems[0].Detail)
	assert.Equal(t, n-1, got[1].Block, "the last block, which a repair cuts off")
	assert.Zero(t, got[1].LastBlock)
	wantKind := KindBlock
	if torn {
		wantKind = KindTornTail
	}
	assert.Equal(t, wantKind, got[1].Kind)
	assert.Equal(t, RepairTruncate, got[1].Repair)
	// Reading the 8 GiB of zeros in chunks allocates at least that much.
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20),
		"allocated while checking a sparse file")

	r = v.run(t, true)
	require.Len(t, r.Problems, 2)
	assert.True(t, r.Problems[1].Repaired)
	fi, err := os.Stat(filepath.Join(v.dir, "f"))
	require.NoError(t, err)
	assert.Equal(t, content.BlockOffset(uint64(n-1)), fi.Size(), "the repair cut the last block only")
}

// TestBlockRuns checks that consecutive lost blocks make one problem, and
// that a run ends at a block that is sound or damaged in another way.
func TestBlockRuns(t *testing.T) {
	v := newVolume(t)
	f := v.newFile(t, plain(1, 8*bs))
	for _, b := range []int64{1, 2, 3, 5} {
		f.data[content.BlockOffset(uint64(b))+50] ^= 0x80
	}
	v.write(t, "f", f.data)
	got := problemsOf(v.run(t, false), "f")
	require.Len(t, got, 2, "%+v", got)
	assert.Equal(t, int64(1), got[0].Block)
	assert.Equal(t, int64(3), got[0].LastBlock)
	assert.Equal(t, int64(5), got[1].Block)
	assert.Zero(t, got[1].LastBlock)
}
