package main

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
)

// The re-encryption tests read file IDs and key slots straight from the
// header bytes at the offsets of docs/format.md: magic "coffer" at 0, file
// ID at 8..24, slot 0 (key ID, generation) at 24, slot 1 at 152.

// backingHeader is what a test reads from one content file's header.
type backingHeader struct {
	id          string
	key0, key1  uint32
	gen0, gen1  uint64
	mtimeNanos  int64
	mode        fs.FileMode
	contentSize int64
}

// contentHeaders returns the header of every content file (file or
// symlink) under backing, by backing path.
func contentHeaders(t *testing.T, backing string) map[string]backingHeader {
	t.Helper()
	out := map[string]backingHeader{}
	err := filepath.WalkDir(backing, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if d.IsDir() && d.Name() == keys.DirName {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		if len(b) < 280 || string(b[:6]) != "coffer" {
			return nil
		}
		fi, err := d.Info()
		require.NoError(t, err)
		rel, _ := filepath.Rel(backing, p)
		out[rel] = backingHeader{
			id:   hex.EncodeToString(b[8:24]),
			key0: binary.BigEndian.Uint32(b[24:28]), gen0: binary.BigEndian.Uint64(b[28:36]),
			key1: binary.BigEndian.Uint32(b[152:156]), gen1: binary.BigEndian.Uint64(b[156:164]),
			mtimeNanos: fi.ModTime().UnixNano(), mode: fi.Mode(), contentSize: fi.Size(),
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// reencryptTree fills a mounted volume with files of several sizes (one
// and several blocks, empty), a symlink, a file with a user xattr and
// unusual modes, mirrored in the reference copy.
func reencryptTree(t *testing.T, f *mountFixture, n int) tree {
	t.Helper()
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.populate(t, n)
	tr.write(t, "big", bytes.Repeat([]byte("0123456789abcdef"), 3*4096/16+77))
	tr.write(t, "empty", nil)
	for _, root := range []string{tr.mnt, tr.ref} {
		require.NoError(t, os.Symlink("d0/sub0/file-3", filepath.Join(root, "link")))
		require.NoError(t, os.Chmod(filepath.Join(root, "big"), 0o640))
	}
	return tr
}

// assertReencrypted checks that every content file has a new file ID and
// one slot on the ring's only key, generation 1, with its mtime and mode
// kept; no temporary file or state is left.
func assertReencrypted(t *testing.T, f *mountFixture, before map[string]backingHeader, old uint32) {
	t.Helper()
	next := primaryOf(t, f.backing)
	assert.NotEqual(t, old, next)
	assert.Equal(t, map[uint32]keys.KeyState{next: keys.StatePrimary}, ringKeys(t, f.backing),
		"the old ring keys are purged")
	assert.Equal(t, []uint32{next}, keysIn(headerKeys(t, f.backing)))
	after := contentHeaders(t, f.backing)
	require.Equal(t, len(before), len(after))
	for p, b := range before {
		a, ok := after[p]
		require.True(t, ok, p)
		assert.NotEqual(t, b.id, a.id, "file ID of %s", p)
		assert.Equal(t, [4]uint64{uint64(next), 1, 0, 0},
			[4]uint64{uint64(a.key0), a.gen0, uint64(a.key1), a.gen1}, "slots of %s", p)
		assert.Equal(t, b.mtimeNanos, a.mtimeNanos, "mtime of %s", p)
		assert.Equal(t, b.mode, a.mode, "mode of %s", p)
		assert.Equal(t, b.contentSize, a.contentSize, "size of %s", p)
	}
	_, err := os.Stat(filepath.Join(f.backing, keys.DirName, keys.ReencryptName))
	assert.ErrorIs(t, err, fs.ErrNotExist)
	_, err = os.Stat(filepath.Join(f.backing, keys.DirName, keys.RotationName))
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.Empty(t, tempFiles(t, f.backing))
}

func tempFiles(t *testing.T, backing string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(backing, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if strings.HasPrefix(d.Name(), ".coffer.reenc.") {
			out = append(out, p)
		}
		return nil
	}))
	return out
}

func TestRotateReencrypt(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	logPath := filepath.Join(f.dir, "audit.jsonl")
	requireOK(t, cli(t, "init", f.backing, "--master", f.keyURI(), "--audit-log", logPath))
	requireOK(t, f.mount(t))
	tr := reencryptTree(t, f, 20)
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "attrs"), []byte("with xattr"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(tr.ref, "attrs"), []byte("with xattr"), 0o600))
	require.NoError(t, setXattr(filepath.Join(f.mnt, "attrs"), "user.colour", "blue"))
	f.unmount(t)
	old := primaryOf(t, f.backing)
	before := contentHeaders(t, f.backing)
	require.Len(t, before, 23, "20 files, big, link and attrs; the empty file has no header")

	r := cliProcess(t, "rotate", f.backing, "--reencrypt")
	requireOK(t, r)
	assert.Contains(t, r.stdout, "re-encrypted 23 files with new data keys (0 already done)")
	assertReencrypted(t, f, before, old)

	records := auditLines(t, logPath)
	re := ofEvent(records, audit.EventReencrypt)
	require.Len(t, re, 1)
	assert.EqualValues(t, 23, re[0]["count"])
	assert.Len(t, ofEvent(records, audit.EventKeyPurged), 1)
	requireOK(t, cli(t, "audit", "verify", logPath, "--backing", f.backing))

	requireOK(t, cliProcess(t, "fsck", f.backing))
	requireOK(t, f.mount(t))
	tr.check(t)
	v, err := getXattr(filepath.Join(f.mnt, "attrs"), "user.colour")
	require.NoError(t, err)
	assert.Equal(t, "blue", v)
}

func TestRotateReencryptRefusedWhileMounted(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	tr := reencryptTree(t, f, 3)
	cfg, err := os.ReadFile(filepath.Join(f.backing, keys.DirName, keys.ConfigName))
	require.NoError(t, err)
	before := contentHeaders(t, f.backing)

	assertFailure(t, cliProcess(t, "rotate", f.backing, "--reencrypt"), exitFailure,
		"unmount first")
	after, err := os.ReadFile(filepath.Join(f.backing, keys.DirName, keys.ConfigName))
	require.NoError(t, err)
	assert.Equal(t, cfg, after, "the ring is unchanged")
	assert.Equal(t, before, contentHeaders(t, f.backing))
	tr.check(t)
}

// TestRotateReencryptHardLinks: a file with hard links is refused before
// anything changes, naming its backing path.
func TestRotateReencryptHardLinks(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	tr := reencryptTree(t, f, 3)
	require.NoError(t, os.Link(filepath.Join(f.mnt, "big"), filepath.Join(f.mnt, "big2")))
	require.NoError(t, os.Link(filepath.Join(tr.ref, "big"), filepath.Join(tr.ref, "big2")))
	f.unmount(t)
	before := snapshot(t, f.backing)

	r := cliProcess(t, "rotate", f.backing, "--reencrypt")
	assertFailure(t, r, exitFailure, "2 backing files have hard links")
	assert.Equal(t, before, snapshot(t, f.backing), "nothing changed")

	// Once the link is a copy, the re-encryption goes through.
	requireOK(t, f.mount(t))
	for _, root := range []string{tr.mnt, tr.ref} {
		require.NoError(t, os.Remove(filepath.Join(root, "big2")))
		b, err := os.ReadFile(filepath.Join(root, "big"))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(root, "big2"), b, 0o600))
	}
	f.unmount(t)
	requireOK(t, cliProcess(t, "rotate", f.backing, "--reencrypt"))
	requireOK(t, f.mount(t))
	tr.check(t)
}

// TestRotateReencryptTampered: a block that fails authentication stops the
// run, naming the file, which stays as it was; no key is purged.
func TestRotateReencryptTampered(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	reencryptTree(t, f, 3)
	f.unmount(t)
	old := primaryOf(t, f.backing)
	var victim string
	for p, h := range contentHeaders(t, f.backing) {
		if h.contentSize > 3*4136 {
			victim = filepath.Join(f.backing, p)
		}
	}
	require.NotEmpty(t, victim)
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	b[280+4136+100] ^= 1 // a byte of block 1
	require.NoError(t, os.WriteFile(victim, b, 0o600))

	r := cliProcess(t, "rotate", f.backing, "--reencrypt")
	assertFailure(t, withoutProgress(r), exitFailure, "failed to re-encrypt")
	assert.Contains(t, r.stderr, victim)
	assert.Contains(t, r.stderr, "block 1")
	after, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, b, after, "the damaged file is untouched")
	assert.Contains(t, ringKeys(t, f.backing), old, "the old key is not purged")
	assert.Empty(t, tempFiles(t, f.backing))
	assertFailure(t, cliProcess(t, "rotate", f.backing), exitFailure,
		"a re-encryption of this volume was interrupted")
	_ = os.Remove(victim)
	requireOK(t, cliProcess(t, "rotate", f.backing, "--reencrypt"))
	assert.NotContains(t, ringKeys(t, f.backing), old, "resumed and purged")
}

// TestRotateReencryptKilledAndResumed kills the re-encryption at many
// points (before and after renames, around the ring commits), checks
// after each kill that every file reads as the reference copy, and that
// the final run skips what was done and leaves no temporary file.
func TestRotateReencryptKilledAndResumed(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	tr := reencryptTree(t, f, 10)
	f.unmount(t)
	old := primaryOf(t, f.backing)
	before := contentHeaders(t, f.backing)

	// Points 1-3 are around the first ring commit and the state file; then
	// two per file (before and after its rename); the last ones retire,
	// purge and clear the state.
	kills, temps, repaired := 0, 0, false
	for _, point := range []int{1, 2, 3, 4, 7, 8, 11, 16, 21, 40} {
		cmd := exec.Command(os.Args[0], "rotate", f.backing, "--reencrypt")
		cmd.Env = append(os.Environ(), mainEnv+"=1", "COFFER_TEST_KILL_POINT="+strconv.Itoa(point))
		out, err := cmd.CombinedOutput()
		killed := err != nil && strings.Contains(err.Error(), "killed")
		if err != nil && !killed {
			t.Fatalf("kill point %d: %v\n%s", point, err, out)
		}
		if killed {
			kills++
		}
		left := tempFiles(t, f.backing)
		temps += len(left)
		if len(left) > 0 && !repaired {
			// fsck knows the copies and removes them; the originals stay.
			r := cliProcess(t, "fsck", f.backing, "--repair")
			assert.Contains(t, r.stdout+r.stderr, "interrupted coffer rotate --reencrypt")
			assert.Empty(t, tempFiles(t, f.backing))
			repaired = true
		}
		requireOK(t, f.mount(t))
		tr.check(t)
		f.unmount(t)
	}
	t.Logf("killed %d times, %d temporary files left by kills", kills, temps)
	assert.GreaterOrEqual(t, kills, 8)
	assert.Positive(t, temps, "a kill before a rename leaves a temporary file")
	assert.True(t, repaired)

	r := cliProcess(t, "rotate", f.backing, "--reencrypt")
	requireOK(t, r)
	assertReencrypted(t, f, before, old)
	requireOK(t, cliProcess(t, "fsck", f.backing))
	requireOK(t, f.mount(t))
	tr.check(t)
}

func setXattr(path, name, value string) error {
	return unix.Setxattr(path, name, []byte(value), 0)
}

func getXattr(path, name string) (string, error) {
	b := make([]byte, 256)
	n, err := unix.Getxattr(path, name, b)
	if err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

// withoutProgress drops the progress lines of a rotation from r's stderr.
func withoutProgress(r result) result {
	var keep []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if !strings.HasPrefix(l, "coffer: rotate: ") {
			keep = append(keep, l)
		}
	}
	r.stderr = strings.Join(keep, "\n")
	return r
}
