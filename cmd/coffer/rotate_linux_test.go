package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	cofferfs "github.com/cofferfs/coffer/fs"
	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
)

// The rotation tests check files against a reference copy kept in a plain
// directory, and read the key IDs of headers straight from the bytes at the
// offsets docs/format.md gives, independently of the code under test.

// headerKeys returns, for every file header and directory record in
// backing, the ring key ID of its current slot (the higher generation).
func headerKeys(t *testing.T, backing string) map[uint32]int {
	t.Helper()
	out := map[uint32]int{}
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
		if len(b) < 280 || (string(b[:6]) != "coffer" && string(b[:6]) != "cofdir") {
			return nil
		}
		k0, g0 := binary.BigEndian.Uint32(b[24:28]), binary.BigEndian.Uint64(b[28:36])
		k1, g1 := binary.BigEndian.Uint32(b[152:156]), binary.BigEndian.Uint64(b[156:164])
		if g1 > g0 {
			k0 = k1
		}
		out[k0]++
		return nil
	})
	require.NoError(t, err)
	return out
}

// ringKeys returns the ring keys volume.json lists, by ID.
func ringKeys(t *testing.T, backing string) map[uint32]keys.KeyState {
	t.Helper()
	cfg, err := keys.ReadConfig(backing)
	require.NoError(t, err)
	out := map[uint32]keys.KeyState{}
	for _, k := range cfg.Ring.Keys {
		out[k.ID] = k.State
	}
	return out
}

func primaryOf(t *testing.T, backing string) uint32 {
	t.Helper()
	for id, st := range ringKeys(t, backing) {
		if st == keys.StatePrimary {
			return id
		}
	}
	t.Fatal("no primary key")
	return 0
}

// tree writes the same files through the mount and into ref.
type tree struct {
	mnt, ref string
}

func (tr tree) write(t *testing.T, name string, data []byte) {
	t.Helper()
	for _, root := range []string{tr.mnt, tr.ref} {
		p := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
		require.NoError(t, os.WriteFile(p, data, 0o600))
	}
}

// populate writes n files in a few directories, some with long names.
func (tr tree) populate(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		name := fmt.Sprintf("d%d/sub%d/file-%d", i%3, i%2, i)
		if i%10 == 0 {
			name += strings.Repeat("x", 200) // a long name with a sidecar
		}
		tr.write(t, name, bytes.Repeat([]byte{byte(i)}, 1+i*37%9000))
	}
}

// check compares the mount with the reference copy, both ways.
func (tr tree) check(t *testing.T) {
	t.Helper()
	want := snapshot(t, tr.ref)
	got := snapshot(t, tr.mnt)
	assert.Equal(t, want, got)
}

func (f *mountFixture) rotateArgs(extra ...string) []string {
	return append([]string{"rotate", f.backing}, extra...)
}

func TestRotateOfflineAndMounted(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.populate(t, 40)
	old := primaryOf(t, f.backing)
	require.Equal(t, map[uint32]int{old: len(headerKeysOrFail(t, f.backing, old))}, headerKeys(t, f.backing))

	r := cliProcess(t, f.rotateArgs()...)
	requireOK(t, r)
	next := primaryOf(t, f.backing)
	assert.NotEqual(t, old, next)
	assert.Contains(t, r.stdout, "to ring key "+strconv.FormatUint(uint64(next), 10))
	assert.Contains(t, r.stdout, "purged "+strconv.FormatUint(uint64(old), 10))
	assert.Equal(t, map[uint32]keys.KeyState{next: keys.StatePrimary}, ringKeys(t, f.backing))
	assert.Equal(t, []uint32{next}, keysIn(headerKeys(t, f.backing)))
	tr.check(t)

	// The running mount follows: new files get the new key and read back.
	tr.write(t, "after/rotation", []byte("written after the rotation"))
	tr.check(t)
	assert.Equal(t, []uint32{next}, keysIn(headerKeys(t, f.backing)))

	// Unmounted, and again: a second rotation needs no mount.
	f.unmount(t)
	requireOK(t, cliProcess(t, f.rotateArgs()...))
	third := primaryOf(t, f.backing)
	assert.Equal(t, []uint32{third}, keysIn(headerKeys(t, f.backing)))
	requireOK(t, f.mount(t))
	tr.check(t)
	_, err := os.Stat(filepath.Join(f.backing, keys.DirName, keys.RotationName))
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

// headerKeysOrFail returns the headers on key id, as a slice for counting.
func headerKeysOrFail(t *testing.T, backing string, id uint32) []struct{} {
	return make([]struct{}, headerKeys(t, backing)[id])
}

func keysIn(m map[uint32]int) []uint32 {
	var out []uint32
	for id, n := range m {
		if n > 0 {
			out = append(out, id)
		}
	}
	return out
}

// TestRotateUnderWriter rotates while a writer creates, appends to,
// renames and deletes files through the mount.
func TestRotateUnderWriter(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.populate(t, 60)
	old := primaryOf(t, f.backing)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ops int
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; ; i++ {
			select {
			case <-stop:
				ops = i
				return
			default:
			}
			writerStep(t, tr, rng, i)
		}
	}()
	r := cliProcess(t, f.rotateArgs()...)
	close(stop)
	wg.Wait()
	requireOK(t, r)
	t.Logf("writer did %d operations during the rotation", ops)

	tr.check(t)
	next := primaryOf(t, f.backing)
	assert.NotEqual(t, old, next)
	assert.Equal(t, []uint32{next}, keysIn(headerKeys(t, f.backing)))
	f.unmount(t)
	requireOK(t, cliProcess(t, "fsck", f.backing))
	requireOK(t, f.mount(t))
	tr.check(t)
}

// writerStep does one random operation in both the mount and ref.
func writerStep(t *testing.T, tr tree, rng *rand.Rand, i int) {
	name := fmt.Sprintf("w/%d/f%d", i%4, rng.IntN(20))
	switch rng.IntN(4) {
	case 0:
		tr.write(t, name, bytes.Repeat([]byte{byte(i)}, rng.IntN(10000)))
	case 1:
		for _, root := range []string{tr.mnt, tr.ref} {
			fh, err := os.OpenFile(filepath.Join(root, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				require.ErrorIs(t, err, fs.ErrNotExist) // its directory is not made yet
				continue
			}
			_, err = fh.Write([]byte(fmt.Sprintf("append %d\n", i)))
			require.NoError(t, err)
			require.NoError(t, fh.Close())
		}
	case 2:
		to := fmt.Sprintf("w/%d/f%d", rng.IntN(4), rng.IntN(20))
		_ = os.MkdirAll(filepath.Dir(filepath.Join(tr.mnt, to)), 0o700)
		_ = os.MkdirAll(filepath.Dir(filepath.Join(tr.ref, to)), 0o700)
		e1 := os.Rename(filepath.Join(tr.mnt, name), filepath.Join(tr.mnt, to))
		e2 := os.Rename(filepath.Join(tr.ref, name), filepath.Join(tr.ref, to))
		require.Equal(t, e1 == nil, e2 == nil, "rename: %v / %v", e1, e2)
	case 3:
		e1 := os.Remove(filepath.Join(tr.mnt, name))
		e2 := os.Remove(filepath.Join(tr.ref, name))
		require.Equal(t, e1 == nil, e2 == nil, "remove: %v / %v", e1, e2)
	}
}

// TestRotateKilledAndResumed kills coffer rotate with SIGKILL at many
// points (each slot write and each step), checks that every file still
// reads back, and resumes.
func TestRotateKilledAndResumed(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.populate(t, 12)
	f.unmount(t)

	// Kill points: 2 before the re-wrap, one per header written, one after
	// retiring, one after purging. Each round kills at a later point of a
	// fresh rotation or of the resumed one.
	// Fixed points, then points drawn from seeds (logged, to replay).
	points := []int{1, 2, 3, 5, 9, 14, 18, 21, 22, 23, 24, 40}
	for seed := range uint64(4) {
		p := rand.New(rand.NewPCG(seed, 5)).IntN(26) + 1
		t.Logf("seed %d: kill point %d", seed, p)
		points = append(points, p)
	}
	kills := 0
	for _, point := range points {
		cmd := exec.Command(os.Args[0], f.rotateArgs()...)
		cmd.Env = append(os.Environ(), mainEnv+"=1", "COFFER_TEST_KILL_POINT="+strconv.Itoa(point))
		out, err := cmd.CombinedOutput()
		killed := err != nil && strings.Contains(err.Error(), "killed")
		if err != nil && !killed {
			t.Fatalf("kill point %d: %v\n%s", point, err, out)
		}
		if killed {
			kills++
		}
		requireOK(t, f.mount(t))
		tr.check(t)
		f.unmount(t)
	}
	t.Logf("killed %d times", kills)
	assert.GreaterOrEqual(t, kills, 6, "most kill points are reached")
	requireOK(t, cliProcess(t, f.rotateArgs()...))
	next := primaryOf(t, f.backing)
	assert.Equal(t, map[uint32]keys.KeyState{next: keys.StatePrimary}, ringKeys(t, f.backing))
	assert.Equal(t, []uint32{next}, keysIn(headerKeys(t, f.backing)))
	assert.Equal(t, []uint32{next}, keysIn(slotKeys(t, f.backing)),
		"no slot, working or not, names an old key")
	requireOK(t, cliProcess(t, "fsck", f.backing))
	requireOK(t, f.mount(t))
	tr.check(t)
}

// TestRotateSkipMaster rotates with a master key that cannot be reached.
func TestRotateSkipMaster(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	second := f.newKey(t, "second.key")
	requireOK(t, cli(t, "master", "add", f.backing, second))
	secondID := f.masterID(t, second)
	requireOK(t, f.mount(t))
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.populate(t, 8)
	f.unmount(t)
	old := primaryOf(t, f.backing)

	// Unreachable: refused, nothing changed.
	hidden := filepath.Join(f.dir, "second.key.away")
	require.NoError(t, os.Rename(filepath.Join(f.dir, "second.key"), hidden))
	before := snapshot(t, f.backing)
	r := cliProcess(t, f.rotateArgs()...)
	assertFailure(t, r, exitFailure, "master key "+secondID)
	assert.Contains(t, r.stderr, "--skip-master "+secondID)
	assert.Equal(t, before, snapshot(t, f.backing))

	// Skipped: rotated, warned, old key kept retired.
	r = cliProcess(t, f.rotateArgs("--skip-master", secondID)...)
	requireOK(t, r)
	assert.Contains(t, r.stderr, "master key "+secondID+" is skipped")
	next := primaryOf(t, f.backing)
	assert.Equal(t, map[uint32]keys.KeyState{old: keys.StateRetired, next: keys.StatePrimary},
		ringKeys(t, f.backing))
	assert.Equal(t, []uint32{next}, keysIn(headerKeys(t, f.backing)))

	// The skipped master's old copy still opens the volume (rolling
	// forward), and reads the re-wrapped files.
	require.NoError(t, os.Rename(hidden, filepath.Join(f.dir, "second.key")))
	requireOK(t, f.mount(t, "--master", secondID))
	tr.check(t)
	f.unmount(t)

	// Reachable again: a rotation reseals to it and purges.
	requireOK(t, cliProcess(t, f.rotateArgs()...))
	third := primaryOf(t, f.backing)
	assert.Equal(t, map[uint32]keys.KeyState{third: keys.StatePrimary}, ringKeys(t, f.backing))
	requireOK(t, f.mount(t, "--master", secondID))
	tr.check(t)
}

// TestRotateReplaceMaster replaces a master key; no file is touched.
func TestRotateReplaceMaster(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.populate(t, 5)
	f.unmount(t)
	oldID := f.masterID(t, f.keyURI())
	newURI := f.newKey(t, "new.key")
	files := snapshot(t, f.backing)
	delete(files, keys.DirName)

	r := cliProcess(t, f.rotateArgs("--master", oldID+"="+newURI)...)
	requireOK(t, r)
	after := snapshot(t, f.backing)
	for k := range after {
		if k == keys.DirName || strings.HasPrefix(k, keys.DirName+"/") {
			delete(after, k)
		}
	}
	for k := range files {
		if strings.HasPrefix(k, keys.DirName+"/") {
			delete(files, k)
		}
	}
	assert.Equal(t, files, after, "no file outside .coffer changes")
	list := f.masters(t)
	require.Len(t, list, 1)
	assert.Equal(t, newURI, list[0].URI)

	r = f.mount(t, "--master", f.keyURI())
	assert.NotEqual(t, exitOK, r.code, "the old key no longer opens the volume")
	requireOK(t, f.mount(t))
	tr.check(t)

	assertFailure(t, cli(t, "rotate", f.backing, "--master", "nonsense"), exitUsage, "OLD=NEWURI")
}

// TestRotateTwoMounts rotates from a third process while the volume is
// mounted twice: by a coffer mount process and by a second file system in
// this process (standing for another host on shared storage), which holds
// its own ring and follows the rotation through the config alone.
func TestRotateTwoMounts(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.populate(t, 20)

	cfg, ring := unlockFixture(t, f.backing)
	follower := keys.NewFollower(f.backing, ring, zerolog.Nop())
	stop := follower.Watch(20 * time.Millisecond)
	defer stop()
	mnt2 := filepath.Join(f.dir, "mnt2")
	require.NoError(t, os.Mkdir(mnt2, 0o700))
	srv, err := cofferfs.Mount(f.backing, mnt2, cofferfs.Options{VolumeID: cfg.VolumeID,
		Keys: follower, EncryptNames: cfg.EncryptedNames()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Unmount() })
	tr2 := tree{mnt: mnt2, ref: tr.ref}
	tr2.check(t)

	old := primaryOf(t, f.backing)
	requireOK(t, cliProcess(t, f.rotateArgs()...))
	next := primaryOf(t, f.backing)
	assert.Equal(t, map[uint32]keys.KeyState{next: keys.StatePrimary}, ringKeys(t, f.backing))
	// The rotation waited for this mount to load the ring of the retired
	// key; the purge that followed it is loaded at the next look, which a
	// new file's wrap (or the watch) makes: look now, as a wrap would.
	assert.True(t, ring.Has(next), "the rotation waited for the second mount")
	require.NoError(t, follower.Refresh(false))
	assert.False(t, ring.Has(old), "the second mount's ring rolled forward past the purge")
	assert.Equal(t, next, ring.Primary().ID)

	// Both read everything; files each writes are on the new key and
	// read through the other.
	tr.write(t, "from/first", []byte("one"))
	tr2.write(t, "from/second", []byte("two"))
	tr.check(t)
	tr2.check(t)
	assert.Equal(t, []uint32{next}, keysIn(headerKeys(t, f.backing)))
}

// TestRotatePolicy checks --max-key-age, the status warning and --if-due.
func TestRotatePolicy(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	assertFailure(t, cli(t, "rotate", f.backing, "--if-due"), exitUsage, "--if-due needs")
	assertFailure(t, cli(t, "config", f.backing, "--max-key-age", "soon"), exitUsage,
		"invalid --max-key-age")
	r := cli(t, "config", f.backing, "--max-key-age", "90d")
	requireOK(t, r)
	assert.Contains(t, r.stdout, "maximum key age 90 days")

	old := primaryOf(t, f.backing)
	r = cliProcess(t, "rotate", f.backing, "--if-due")
	requireOK(t, r)
	assert.Contains(t, r.stdout, "not due")
	assert.Equal(t, old, primaryOf(t, f.backing))

	// The primary was created 91 days ago (as far as the config says).
	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)
	cfg.Ring.Keys[0].Created = time.Now().UTC().Add(-91 * 24 * time.Hour).Truncate(time.Second)
	require.NoError(t, keys.WriteConfig(f.backing, cfg))
	r = cli(t, "status", f.backing)
	requireOK(t, r)
	assert.Contains(t, r.stdout, "warning: the primary ring key is older than 90 days")

	r = cliProcess(t, "rotate", f.backing, "--if-due")
	requireOK(t, r)
	assert.NotEqual(t, old, primaryOf(t, f.backing))
	assert.NotContains(t, cli(t, "status", f.backing).stdout, "warning:")

	// init --max-key-age records the same policy.
	g := newFixture(t)
	assertFailure(t, cli(t, "init", g.backing, "--master", g.keyURI(), "--max-key-age", "-3"),
		exitUsage, "invalid --max-key-age")
	requireOK(t, cli(t, "init", g.backing, "--master", g.keyURI(), "--max-key-age", "30d"))
	cfg, err = keys.ReadConfig(g.backing)
	require.NoError(t, err)
	require.NotNil(t, cfg.Policy)
	assert.Equal(t, 30, cfg.Policy.MaxKeyAgeDays)
}

// TestStatusScanCounts compares status --scan with the headers' own bytes.
func TestStatusScanCounts(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.populate(t, 15)

	r := cli(t, "status", f.backing, "--scan", "--json")
	requireOK(t, r)
	var st struct {
		Generation uint64 `json:"generation"`
		Rotation   struct {
			FilesByKey map[string]int `json:"files_by_key"`
			Mounts     []struct {
				PID        int    `json:"pid"`
				Generation uint64 `json:"generation"`
			} `json:"mounts"`
		} `json:"rotation"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	want := map[string]int{}
	for id, n := range headerKeys(t, f.backing) {
		want[strconv.FormatUint(uint64(id), 10)] = n
	}
	assert.Equal(t, want, st.Rotation.FilesByKey)
	require.Len(t, st.Rotation.Mounts, 1, "the running mount acknowledges its ring")
	assert.Equal(t, st.Generation, st.Rotation.Mounts[0].Generation)
}

// TestRotateKilledWhileMounted kills coffer rotate at several points while
// the volume stays mounted: the running mount keeps reading every file
// (following each committed ring), and the resumed rotation finishes.
func TestRotateKilledWhileMounted(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.populate(t, 12)

	for _, point := range []int{2, 6, 12, 19, 23} {
		cmd := exec.Command(os.Args[0], f.rotateArgs()...)
		cmd.Env = append(os.Environ(), mainEnv+"=1", "COFFER_TEST_KILL_POINT="+strconv.Itoa(point))
		out, err := cmd.CombinedOutput()
		if err != nil && !strings.Contains(err.Error(), "killed") {
			t.Fatalf("kill point %d: %v\n%s", point, err, out)
		}
		tr.check(t)
		tr.write(t, fmt.Sprintf("during/%d", point), []byte(strconv.Itoa(point)))
	}
	requireOK(t, cliProcess(t, f.rotateArgs()...))
	next := primaryOf(t, f.backing)
	assert.Equal(t, map[uint32]keys.KeyState{next: keys.StatePrimary}, ringKeys(t, f.backing))
	assert.Equal(t, []uint32{next}, keysIn(headerKeys(t, f.backing)))
	tr.check(t)
	f.unmount(t)
	requireOK(t, f.mount(t))
	tr.check(t)
}

// TestRotateWithRecoveryKey rotates a volume with a recovery key without
// its private half: the new ring is sealed to its public key, and the
// recovery key still opens the volume afterwards.
func TestRotateWithRecoveryKey(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.populate(t, 6)
	f.unmount(t)
	rk := f.recoveryNew(t)

	requireOK(t, cliProcess(t, f.rotateArgs()...))
	next := primaryOf(t, f.backing)
	assert.Equal(t, map[uint32]keys.KeyState{next: keys.StatePrimary}, ringKeys(t, f.backing),
		"nothing skipped: the old key is purged")
	requireOK(t, f.mount(t, "--recovery-key", rk))
	tr.check(t)
}

// TestRotateAuditTrail checks the rotation's audit records and that the
// log still verifies after the key that MACed its first records is purged.
func TestRotateAuditTrail(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	logPath := filepath.Join(f.dir, "audit.jsonl")
	requireOK(t, cli(t, "init", f.backing, "--master", f.keyURI(), "--audit-log", logPath))
	requireOK(t, f.mount(t))
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.populate(t, 4)
	old := primaryOf(t, f.backing)
	requireOK(t, cliProcess(t, f.rotateArgs()...))
	next := primaryOf(t, f.backing)
	f.unmount(t) // the mount's last records are MACed with the new key

	records := auditLines(t, logPath)
	started := ofEvent(records, audit.EventRotationStarted)
	require.Len(t, started, 1)
	assert.EqualValues(t, next, started[0]["ring_key"])
	assert.Equal(t, f.masterID(t, f.keyURI()), started[0]["detail"].(map[string]any)["sealed_to"])
	for _, e := range []audit.EventType{audit.EventKeyRetired, audit.EventKeyPurged} {
		got := ofEvent(records, e)
		require.Len(t, got, 1, "%s", e)
		assert.EqualValues(t, old, got[0]["ring_key"])
		assert.Equal(t, f.masterID(t, f.keyURI()), got[0]["detail"].(map[string]any)["sealed_to"],
			"every commit's record says what it sealed to")
	}
	finished := ofEvent(records, audit.EventRotationFinished)
	require.Len(t, finished, 1)
	assert.Equal(t, "ok", finished[0]["outcome"])
	assert.NotEmpty(t, ofEvent(records, audit.EventRotationProgress))

	r := cli(t, "audit", "verify", logPath, "--backing", f.backing)
	requireOK(t, r)
}

// TestRotateRefusesConcurrentRotation holds the rotation lock as a running
// rotation would and checks that a second rotate refuses, changing nothing.
func TestRotateRefusesConcurrentRotation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	unlock, err := lockRotation(f.backing)
	require.NoError(t, err)
	defer unlock()
	before := snapshot(t, f.backing)
	assertFailure(t, cliProcess(t, "rotate", f.backing), exitFailure,
		"another coffer rotate (or a master add) is running")
	assert.Equal(t, before, snapshot(t, f.backing))
}

// TestRotateReplaceLastUnattended: rotate --master OLD=passphrase: would
// also leave only keys a person types; it is refused and names the way.
func TestRotateReplaceLastUnattended(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	fileID := f.masterID(t, f.keyURI())
	requireOK(t, cli(t, "recovery", "new", f.backing, "--out", filepath.Join(f.dir, "rk.txt")))
	recoveryID := f.masterID(t, "recovery:")
	pass := f.passphraseFile(t, "pass.txt", "correct horse")

	before := snapshot(t, f.dir)
	r := cli(t, "rotate", f.backing, "--master", fileID+"=passphrase:",
		"--new-passphrase-file", pass)
	assertFailure(t, r, exitFailure, "failed to replace master key: "+fileID+" (file) is the "+
		"last master key that unlocks without a person; only passphrase (new), recovery "+
		recoveryID+" would be left")
	assert.Contains(t, r.stderr, "then run 'coffer master remove "+f.backing+" "+fileID+
		" --allow-interactive-only'")
	assert.Equal(t, before, snapshot(t, f.dir))

	// Another key file in its place is fine.
	requireOK(t, cli(t, "rotate", f.backing, "--master", fileID+"="+f.newKey(t, "new.key")))
}
