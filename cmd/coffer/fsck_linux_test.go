package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/fs/check"
)

// TestFsck writes files through a mount, damages their backing files and
// checks what coffer fsck reports, repairs and exits with.
func TestFsck(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	requireOK(t, cli(t, "init", f.backing, "--master", f.keyURI(), "--plaintext-names"))
	requireOK(t, f.mount(t))
	data := make([]byte, 3*4096)
	for i := range data {
		data[i] = byte(i * 13)
	}
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "a"), data, 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(f.mnt, "d"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "d", "b"), data[:5000], 0o600))

	assertFailure(t, cli(t, "fsck", f.backing, "--repair"), exitFailure, "refusing to repair")
	r := cli(t, "fsck", f.backing)
	requireOK(t, r)
	assert.Contains(t, r.stderr, "already mounted")
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	r = cli(t, "fsck", f.backing)
	requireOK(t, r)
	assert.Equal(t, "checked 2 files, 5 blocks: 0 problem(s), 0 repaired\n", r.stdout)

	// Block 1 of a altered, d/b cut inside its last block.
	a := filepath.Join(f.backing, "a")
	raw, err := os.ReadFile(a)
	require.NoError(t, err)
	raw[280+4136+100] ^= 1
	require.NoError(t, os.WriteFile(a, raw, 0o600))
	require.NoError(t, os.Truncate(filepath.Join(f.backing, "d", "b"), 280+4136+300))

	r = cli(t, "fsck", f.backing, "--json")
	assert.Equal(t, exitDamaged, r.code, "stderr: %s", r.stderr)
	var rep check.Report
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep))
	require.Len(t, rep.Problems, 2)
	assert.Equal(t, check.Problem{Backing: "a", Path: "a", Block: 1, Kind: check.KindBlock,
		Detail: rep.Problems[0].Detail, Repair: check.RepairNone}, rep.Problems[0])
	assert.Equal(t, check.Problem{Backing: "d/b", Path: "d/b", Block: 1, Kind: check.KindBlock,
		Detail: rep.Problems[1].Detail, Repair: check.RepairTruncate}, rep.Problems[1])
	assert.Contains(t, r.stderr, "1 can be repaired")

	r = cli(t, "fsck", f.backing, "--repair")
	assert.Equal(t, exitDamaged, r.code, "block 1 of a stays lost; stderr: %s", r.stderr)
	assert.Contains(t, r.stdout, "a: block 1: block: fails authentication")
	assert.Contains(t, r.stdout, "d/b: block 1: block: fails authentication")
	assert.Contains(t, r.stdout, "[repaired: truncate]")
	assert.Contains(t, r.stdout, "2 problem(s), 1 repaired")
	assert.Contains(t, r.stderr, "restore the files named above from a backup")
	assert.Contains(t, r.stderr, "1 problem(s) left")
	st, err := os.Stat(filepath.Join(f.backing, "d", "b"))
	require.NoError(t, err)
	assert.Equal(t, int64(280+4136), st.Size())

	require.NoError(t, os.Remove(a))
	requireOK(t, cli(t, "fsck", f.backing))
}

// TestFsckEncryptedNames checks that fsck skips coffer's own entries of a
// volume with encrypted names and names a damaged file by its path in the
// mount and its backing path.
func TestFsckEncryptedNames(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	require.NoError(t, os.MkdirAll(filepath.Join(f.mnt, "etc", "app"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "etc", "app", "db.conf"), make([]byte, 9000), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "top"), []byte("x"), 0o600))
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	r := cli(t, "fsck", f.backing)
	requireOK(t, r)
	assert.Equal(t, "checked 2 files, 4 blocks: 0 problem(s), 0 repaired\n", r.stdout)

	enc := cli(t, "path", "encrypt", f.backing, "/etc/app/db.conf")
	requireOK(t, enc)
	backing := strings.TrimSpace(enc.stdout)
	rel, err := filepath.Rel(f.backing, backing)
	require.NoError(t, err)
	raw, err := os.ReadFile(backing)
	require.NoError(t, err)
	raw[280+4136*2+10] ^= 1
	require.NoError(t, os.WriteFile(backing, raw, 0o600))

	r = cli(t, "fsck", f.backing)
	assert.Equal(t, exitDamaged, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stdout, "etc/app/db.conf ("+rel+"): block 2: block: fails authentication")
}

// TestFsckRecords damages the directory records and a long-name sidecar of
// a volume made through a mount, as the breaker did, and checks that fsck
// names each and exits 3, and that a clean volume gives an empty list.
func TestFsckRecords(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	long := strings.Repeat("n", 200)
	require.NoError(t, os.Mkdir(filepath.Join(f.mnt, "sub"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "sub", "f"), []byte("data"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "sub", long), []byte("long"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "top"), []byte("x"), 0o600))
	require.NoError(t, os.Symlink("sub/f", filepath.Join(f.mnt, "link")))
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	r := cli(t, "fsck", f.backing, "--json")
	requireOK(t, r)
	assert.Contains(t, r.stdout, `"problems": []`)
	assert.Contains(t, r.stdout, `"files": 4`, "the symbolic link's backing file is checked as a file")

	enc := cli(t, "path", "encrypt", f.backing, "/sub")
	requireOK(t, enc)
	sub, err := filepath.Rel(f.backing, strings.TrimSpace(enc.stdout))
	require.NoError(t, err)
	enc = cli(t, "path", "encrypt", f.backing, "/sub/"+long)
	requireOK(t, enc)
	sidecar := strings.TrimSpace(enc.stdout) + ".name"

	// The breaker's repro: garbage in the middle of the root's record.
	rootRec := filepath.Join(f.backing, ".coffer.dir")
	saved, err := os.ReadFile(rootRec)
	require.NoError(t, err)
	damaged := append([]byte(nil), saved...)
	copy(damaged[60:], "garbage")
	require.NoError(t, os.WriteFile(rootRec, damaged, 0o600))
	r = cli(t, "fsck", f.backing)
	assert.Equal(t, exitDamaged, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	assert.Contains(t, r.stdout, "root directory (.): directory-record: no key slot of the directory record .coffer.dir unwraps")
	assert.Contains(t, r.stdout, "from a backup of the backing directory [repair: none]")
	assert.Contains(t, r.stdout, "checked 4 files", "the files are checked all the same")
	// What fsck names is what the mount cannot list.
	requireOK(t, f.mount(t))
	_, err = os.ReadDir(f.mnt)
	assert.ErrorIs(t, err, syscall.EIO)
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	require.NoError(t, os.WriteFile(rootRec, saved, 0o600))

	// The subdirectory's record deleted, the long name's sidecar too.
	subRec := filepath.Join(f.backing, sub, ".coffer.dir")
	savedSub := filepath.Join(t.TempDir(), "saved")
	require.NoError(t, os.Rename(subRec, savedSub))
	require.NoError(t, os.Remove(sidecar))
	r = cli(t, "fsck", f.backing, "--json")
	assert.Equal(t, exitDamaged, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	var rep check.Report
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep))
	require.Len(t, rep.Problems, 2, "%+v", rep.Problems)
	assert.Equal(t, sub, rep.Problems[0].Backing)
	assert.Equal(t, "sub", rep.Problems[0].Path)
	assert.Equal(t, check.KindRecord, rep.Problems[0].Kind)
	assert.Contains(t, rep.Problems[0].Detail, "missing")
	assert.Equal(t, strings.TrimSuffix(sidecar, ".name"), filepath.Join(f.backing, rep.Problems[1].Backing))
	assert.Equal(t, check.KindSidecar, rep.Problems[1].Kind)
	assert.Contains(t, r.stderr, "2 problem(s) left")

	require.NoError(t, os.Rename(savedSub, subRec))
	r = cli(t, "fsck", f.backing)
	assert.Equal(t, exitDamaged, r.code, "the sidecar is still missing")
	assert.Contains(t, r.stdout, "(no path in the mount: a name does not decrypt): sidecar: ")
	requireOK(t, f.mount(t))
	ents, err := os.ReadDir(filepath.Join(f.mnt, "sub"))
	require.NoError(t, err)
	require.Len(t, ents, 1, "the long name is not listed")
	assert.Equal(t, "f", ents[0].Name())
	requireOK(t, cliProcess(t, "unmount", f.mnt))
}

func TestFsckUsage(t *testing.T) {
	t.Parallel()
	assertFailure(t, cli(t, "fsck"), exitUsage, "missing argument BACKING")
	assertFailure(t, cli(t, "fsck", "a", "b"), exitUsage, "unexpected argument")
	assertFailure(t, cli(t, "fsck", t.TempDir()), exitFailure, "not initialised")
}
