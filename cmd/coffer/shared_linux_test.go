package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/keys"
)

// The tests of this file run two "coffer mount --shared" processes on one
// backing directory, as two hosts on shared storage would.

// sharedFixture is a volume with two mount points.
type sharedFixture struct {
	*mountFixture
	mnt2 string
}

func newSharedFixture(t *testing.T) *sharedFixture {
	t.Helper()
	f := &sharedFixture{mountFixture: newMountFixture(t)}
	f.init(t)
	f.mnt2 = filepath.Join(f.dir, "mnt2")
	require.NoError(t, os.Mkdir(f.mnt2, 0o700))
	t.Cleanup(func() {
		forceUnmount(t, f.mnt2)
		forceUnmount(t, f.mnt)
		waitVolumeFree(t, f.backing)
	})
	return f
}

// waitVolumeFree waits until no coffer process uses backing: "coffer
// unmount" returns a moment before the mount process is done with the
// backing directory, and the test's temporary directory goes next.
func waitVolumeFree(t *testing.T, backing string) {
	fd, err := unix.Open(filepath.Join(backing, keys.DirName), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Errorf("failed to open the volume to wait for its mounts: %v", err)
		return
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		t.Errorf("failed to wait for the mounts to end: %v", err)
	}
}

// mountBoth mounts the volume on both mount points, shared: one with
// --shared, the other as the mount helper's -o shared.
func (f *sharedFixture) mountBoth(t *testing.T) {
	t.Helper()
	requireOK(t, f.mount(t, "--shared"))
	requireOK(t, cliProcess(t, "mount", f.backing, f.mnt2, "--log-file", f.log+"2", "-o", "shared"))
	require.True(t, isMounted(t, f.mnt2))
}

func TestMountSharedRefusals(t *testing.T) {
	f := newSharedFixture(t)
	mnt3 := filepath.Join(f.dir, "mnt3")
	require.NoError(t, os.Mkdir(mnt3, 0o700))
	t.Cleanup(func() { forceUnmount(t, mnt3) })
	f.mountBoth(t)

	// A mount of its own next to shared ones.
	r := cliProcess(t, "mount", f.backing, mnt3, "--log-file", f.log+"3")
	assertFailure(t, r, exitFailure, "backing directory "+f.backing+" is already mounted")
	assert.Contains(t, r.stderr, "mount every one of them with --shared")
	assert.False(t, isMounted(t, mnt3))

	// fsck --repair and rotate --reencrypt need the volume to themselves.
	assertFailure(t, cliProcess(t, "fsck", f.backing, "--repair"), exitFailure, "refusing to repair")
	assertFailure(t, cliProcess(t, "rotate", f.backing, "--reencrypt"), exitFailure, "is mounted")

	requireOK(t, cliProcess(t, "unmount", f.mnt))
	requireOK(t, cliProcess(t, "unmount", f.mnt2))

	// A shared mount next to a mount of its own.
	requireOK(t, f.mount(t))
	r = cliProcess(t, "mount", "--shared", f.backing, f.mnt2, "--log-file", f.log+"2")
	assertFailure(t, r, exitFailure, "is in use by a coffer process that needs it to itself")
	assert.False(t, isMounted(t, f.mnt2))
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	// A shared mount while fsck --repair holds the volume.
	p := startPaused(t, []string{"fsck", f.backing, "--repair"}, "fsck-locked")
	r = cliProcess(t, "mount", "--shared", f.backing, f.mnt2, "--log-file", f.log+"2")
	assertFailure(t, r, exitFailure, "is in use by a coffer process that needs it to itself")
	assert.False(t, isMounted(t, f.mnt2))
	requireOK(t, p.resume(t))
}

// TestMountSharedRoundTrip changes files through each mount process and
// reads them through the other, against the same changes in a plain
// directory.
func TestMountSharedRoundTrip(t *testing.T) {
	f := newSharedFixture(t)
	f.mountBoth(t)
	ref := filepath.Join(f.dir, "ref")
	a := tree{mnt: f.mnt, ref: ref}
	b := tree{mnt: f.mnt2, ref: ref}

	a.populate(t, 12)
	b.check(t)

	name := "d1/sub1/file-1"
	for _, root := range []string{f.mnt2, ref} {
		fh, err := os.OpenFile(filepath.Join(root, name), os.O_WRONLY|os.O_APPEND, 0)
		require.NoError(t, err)
		_, err = fh.Write(bytes.Repeat([]byte("appended through b "), 500))
		require.NoError(t, err)
		require.NoError(t, fh.Close())
		require.NoError(t, os.Truncate(filepath.Join(root, "d0/sub0/file-0"+longSuffix()), 3))
		require.NoError(t, os.Rename(filepath.Join(root, "d2"), filepath.Join(root, "renamed")))
	}
	a.check(t)
	b.check(t)
}

// longSuffix is the suffix tree.populate gives every tenth name.
func longSuffix() string {
	return string(bytes.Repeat([]byte("x"), 200))
}

// TestMountSharedRotateUnderLoad is issue 5's test: two mount processes of
// one backing directory run writers while a third process rotates the
// ring. Each writer keeps its own files (checked against a plain copy)
// and both write whole blocks of one common file. Afterwards both mounts
// read everything, no header uses the retired key, the retired key was
// purged, and fsck finds nothing.
func TestMountSharedRotateUnderLoad(t *testing.T) {
	f := newSharedFixture(t)
	f.mountBoth(t)
	mounts := []string{f.mnt, f.mnt2}
	refs := []string{filepath.Join(f.dir, "ref0"), filepath.Join(f.dir, "ref1")}
	for i := range mounts {
		require.NoError(t, os.MkdirAll(filepath.Join(mounts[i], fmt.Sprintf("w%d", i)), 0o700))
		require.NoError(t, os.MkdirAll(filepath.Join(refs[i], fmt.Sprintf("w%d", i)), 0o700))
	}
	const commonBlocks = 32
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "common"), make([]byte, commonBlocks*4096), 0o600))
	old := primaryOf(t, f.backing)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	ops := make([]int, len(mounts))
	for i := range mounts {
		wg.Go(func() {
			tr := tree{mnt: filepath.Join(mounts[i], fmt.Sprintf("w%d", i)),
				ref: filepath.Join(refs[i], fmt.Sprintf("w%d", i))}
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			common, err := os.OpenFile(filepath.Join(mounts[i], "common"), os.O_WRONLY, 0)
			if !assert.NoError(t, err) {
				return
			}
			defer common.Close()
			for n := 0; ; n++ {
				select {
				case <-stop:
					ops[i] = n
					return
				default:
				}
				writerStep(t, tr, rng, n)
				blk := rng.IntN(commonBlocks - 2)
				fill := bytes.Repeat([]byte{byte(1 + i*100 + n%100)}, 4096)
				_, err := common.WriteAt(bytes.Repeat(fill, 2), int64(blk*4096))
				if !assert.NoError(t, err, "common file, mount %d", i) {
					return
				}
			}
		})
	}
	r := cliProcess(t, "rotate", f.backing)
	// fsck reads each file under a lock of all of it, so the writers
	// cannot make it see a block half written.
	check := cliProcess(t, "fsck", f.backing)
	close(stop)
	wg.Wait()
	requireOK(t, r)
	assert.Equal(t, exitOK, check.code, "fsck next to the writers: %s%s", check.stdout, check.stderr)
	t.Logf("writers did %v operations during the rotation and the check", ops)

	for _, mnt := range mounts {
		for i := range mounts {
			want := snapshot(t, filepath.Join(refs[i], fmt.Sprintf("w%d", i)))
			got := snapshot(t, filepath.Join(mnt, fmt.Sprintf("w%d", i)))
			assert.Equal(t, want, got, "writer %d's files through %s", i, mnt)
		}
		common, err := os.ReadFile(filepath.Join(mnt, "common"))
		require.NoError(t, err)
		require.Len(t, common, commonBlocks*4096)
		for blk := range commonBlocks {
			b := common[blk*4096 : (blk+1)*4096]
			assert.Equal(t, bytes.Repeat(b[:1], 4096), b, "block %d is one writer's", blk)
		}
	}

	next := primaryOf(t, f.backing)
	assert.NotEqual(t, old, next)
	assert.Equal(t, map[uint32]keys.KeyState{next: keys.StatePrimary}, ringKeys(t, f.backing),
		"the retired key was purged")
	st := cli(t, "status", f.backing, "--scan", "--json")
	requireOK(t, st)
	var status struct {
		Rotation struct {
			FilesByKey map[string]int `json:"files_by_key"`
			Mounts     []struct {
				PID int `json:"pid"`
			} `json:"mounts"`
		} `json:"rotation"`
	}
	require.NoError(t, json.Unmarshal([]byte(st.stdout), &status))
	assert.Equal(t, []string{strconv.FormatUint(uint64(next), 10)}, sortedKeys(status.Rotation.FilesByKey),
		"status --scan: every file on the new key")
	assert.Len(t, status.Rotation.Mounts, 2, "both mounts acknowledge the ring")

	requireOK(t, cliProcess(t, "fsck", f.backing))
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	requireOK(t, cliProcess(t, "unmount", f.mnt2))
	waitVolumeFree(t, f.backing)
	undo, err := os.ReadDir(filepath.Join(f.backing, keys.DirName, "undo"))
	require.NoError(t, err)
	assert.Empty(t, undo, "a shared mount removes its undo records when it ends")
	requireOK(t, cliProcess(t, "fsck", f.backing))
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
