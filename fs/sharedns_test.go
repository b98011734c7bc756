//go:build linux

package fs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The tests of this file race namespace changes of two shared mounts of
// one volume with encrypted names, each side for a fixed number of rounds.
// Without the namespace lock (nslock.go) each of them loses data or leaves
// debris within those rounds on an idle machine and a loaded one alike;
// with it, what they check holds whatever the interleaving.

// nsRounds is the number of rounds each side of a race runs.
const nsRounds = 200

// tmpLeftovers lists the temporary backing names left in the volume.
func tmpLeftovers(t *testing.T, backing string) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(backing, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".coffer.tmp.") {
			left = append(left, p)
		}
		return nil
	})
	require.NoError(t, err)
	return left
}

// TestSharedRenameOverEmptyDirRace renames a new directory over an empty
// one in one mount while the other moves that empty directory away, in
// several directories at once: every directory must keep its record and
// stay readable and writable.
func TestSharedRenameOverEmptyDirRace(t *testing.T) {
	v, a, b := sharedPair(t, true)
	const pairs, rounds = 2, 200
	var wg sync.WaitGroup
	for p := range pairs {
		base := fmt.Sprintf("base%d", p)
		require.NoError(t, os.MkdirAll(filepath.Join(a, base, "t"), 0o755))
		wg.Go(func() {
			for range rounds {
				_ = os.Mkdir(filepath.Join(a, base, "s"), 0o755)
				// os.Rename refuses an existing directory as the target.
				_ = unix.Rename(filepath.Join(a, base, "s"), filepath.Join(a, base, "t"))
			}
		})
		wg.Go(func() {
			for i := range 2 * rounds {
				_ = os.Rename(filepath.Join(b, base, "t"), filepath.Join(b, base, fmt.Sprintf("keep%d", i)))
			}
		})
	}
	wg.Wait()

	moved := 0
	for p := range pairs {
		base := fmt.Sprintf("base%d", p)
		ents, err := os.ReadDir(filepath.Join(b, base))
		require.NoError(t, err)
		moved += len(ents)
		for _, e := range ents {
			d := filepath.Join(b, base, e.Name())
			if _, err := os.ReadDir(d); err != nil {
				t.Errorf("directory %s/%s lost its record: %v", base, e.Name(), err)
				continue
			}
			assert.NoError(t, os.WriteFile(filepath.Join(d, "f"), []byte(e.Name()), 0o644))
			got, err := os.ReadFile(filepath.Join(a, base, e.Name(), "f"))
			if assert.NoError(t, err) {
				assert.Equal(t, e.Name(), string(got))
			}
		}
	}
	t.Logf("%d directories checked", moved)
	assert.Empty(t, tmpLeftovers(t, v.backing))
}

// TestSharedRecordRemovalUnderLock stops a rename over an empty directory,
// and a removal of one, in the moment after the directory's record is gone:
// there another mount, playing by the rules, must find the namespace lock
// taken. Were it free, the test moves the directory away through the other
// mount, as a racing rename would, and the directory loses its record.
func TestSharedRecordRemovalUnderLock(t *testing.T) {
	v, a, b := sharedPair(t, true)
	for _, d := range []string{"s", "t", "r"} {
		require.NoError(t, os.MkdirAll(filepath.Join(a, "base", d), 0o755))
	}
	lockPath := filepath.Join(v.backing, ReservedName, NamespaceLockName)
	victims := []string{"t", "r"}
	// The hook runs in the file system's goroutines: atomics let the
	// race detector see what the kernel orders.
	var calls, free atomic.Int32
	hook := func(dir string) {
		if !strings.HasPrefix(dir, v.backing+"/") || int(calls.Load()) >= len(victims) {
			return
		}
		victim := victims[calls.Add(1)-1]
		fd, err := unix.Open(lockPath, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
		if err != nil {
			t.Errorf("open lock file: %v", err)
			return
		}
		defer unix.Close(fd)
		flk := unix.Flock_t{Type: unix.F_WRLCK, Len: 1}
		if unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &flk) != nil {
			return // taken, as it must be: another mount would wait here
		}
		free.Add(1)
		flk.Type = unix.F_UNLCK
		_ = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &flk)
		_ = os.Rename(filepath.Join(b, "base", victim), filepath.Join(b, "base", "moved-"+victim))
	}
	recordHook.Store(&hook)
	t.Cleanup(func() { recordHook.Store(nil) })

	// os.Rename refuses an existing directory as the target.
	require.NoError(t, unix.Rename(filepath.Join(a, "base", "s"), filepath.Join(a, "base", "t")))
	_ = os.Remove(filepath.Join(a, "base", "r"))
	recordHook.Store(nil)

	assert.Equal(t, int32(2), calls.Load(), "both operations removed a record")
	assert.Zero(t, free.Load(), "the namespace lock was free while a record was missing")
	ents, err := os.ReadDir(filepath.Join(b, "base"))
	require.NoError(t, err)
	for _, e := range ents {
		_, err := os.ReadDir(filepath.Join(b, "base", e.Name()))
		assert.NoError(t, err, "directory %s lost its record", e.Name())
	}
	assert.NotContains(t, v.logs.String(), `"level":"warn"`)
}

// TestSharedCreateInReplacedDir creates a file, through a descriptor of a
// directory, after another mount removed the directory and made a new one
// of the same name: the create must fail (the directory it names is gone)
// or make a file the other mount reads; never a file hidden in the new
// directory under the old one's name key, which would also keep the new
// directory from ever being removed.
func TestSharedCreateInReplacedDir(t *testing.T) {
	v, a, b := sharedPair(t, true)
	require.NoError(t, os.MkdirAll(filepath.Join(a, "base", "d"), 0o755))
	dir, err := os.Open(filepath.Join(b, "base", "d"))
	require.NoError(t, err)
	defer dir.Close()
	dfd := int(dir.Fd())
	// A first file makes b's node of d load and cache d's name key.
	fd, err := unix.Openat(dfd, "f0", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	require.NoError(t, err)
	require.NoError(t, unix.Close(fd))
	require.NoError(t, unix.Unlinkat(dfd, "f0", 0))

	require.NoError(t, os.Remove(filepath.Join(a, "base", "d")))
	require.NoError(t, os.Mkdir(filepath.Join(a, "base", "d"), 0o755))

	fd, err = unix.Openat(dfd, "f1", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err == nil {
		_, werr := unix.Write(fd, []byte("payload"))
		require.NoError(t, werr)
		require.NoError(t, unix.Close(fd))
		got, err := os.ReadFile(filepath.Join(a, "base", "d", "f1"))
		require.NoError(t, err, "a file created in the replaced directory is lost")
		assert.Equal(t, "payload", string(got))
		require.NoError(t, os.Remove(filepath.Join(a, "base", "d", "f1")))
	} else {
		assert.ErrorIs(t, err, unix.ENOENT)
	}
	assert.NoError(t, os.Remove(filepath.Join(a, "base", "d")), "the directory holds hidden entries")
	assert.NotContains(t, v.logs.String(), `"level":"warn"`)
}

// TestSharedMkdirInRenamedDirRace makes and removes a directory in one
// mount while the other renames its parent back and forth: mkdir fails
// only with ENOENT or EEXIST (never EIO) and leaves no temporary
// directory behind.
func TestSharedMkdirInRenamedDirRace(t *testing.T) {
	v, a, b := sharedPair(t, true)
	require.NoError(t, os.Mkdir(filepath.Join(a, "p"), 0o755))
	var wg sync.WaitGroup
	var bad []string
	wg.Go(func() {
		for range nsRounds {
			for _, err := range []error{
				os.Mkdir(filepath.Join(a, "p", "x"), 0o755),
				os.Remove(filepath.Join(a, "p", "x")),
			} {
				if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EEXIST) {
					bad = append(bad, err.Error())
				}
			}
		}
	})
	wg.Go(func() {
		for range nsRounds {
			_ = os.Rename(filepath.Join(b, "p"), filepath.Join(b, "q"))
			_ = os.Rename(filepath.Join(b, "q"), filepath.Join(b, "p"))
		}
	})
	wg.Wait()
	assert.Empty(t, bad, "logs: %s", v.logs)
	assert.Empty(t, tmpLeftovers(t, v.backing))
	for _, n := range []string{"p", "q"} {
		if _, err := os.Stat(filepath.Join(a, n)); err == nil {
			_ = os.Remove(filepath.Join(a, n, "x"))
			assert.NoError(t, os.Remove(filepath.Join(a, n)), "the directory holds hidden entries")
		}
	}
}

// TestSharedSymlinkRace makes, reads and removes one symbolic link from
// both mounts at once: readlink finds a link with its target or nothing,
// never a regular file (EINVAL) or a link without its target.
func TestSharedSymlinkRace(t *testing.T) {
	_, a, b := sharedPair(t, true)
	var wg sync.WaitGroup
	errs := make([][]string, 4)
	for w := range 4 {
		mnt := []string{a, b}[w%2]
		wg.Go(func() {
			p := filepath.Join(mnt, "s")
			target := fmt.Sprintf("target%d", w)
			for range nsRounds / 2 {
				_ = os.Remove(p)
				_ = os.Symlink(target, p)
				got, err := os.Readlink(p)
				switch {
				case errors.Is(err, os.ErrNotExist):
				case err != nil:
					errs[w] = append(errs[w], err.Error())
				case !strings.HasPrefix(got, "target"):
					errs[w] = append(errs[w], fmt.Sprintf("target %q", got))
				}
			}
		})
	}
	wg.Wait()
	for w := range errs {
		assert.Empty(t, errs[w], "worker %d", w)
	}
}

// TestSharedLookupDuringRenameOver looks a name up through one mount in a
// directory whose record the other mount's rename over it has just taken
// away: the lookup must wait for the rename (it blocks on the namespace
// lock) and then find the directory in place, never fail with EIO.
func TestSharedLookupDuringRenameOver(t *testing.T) {
	v, a, b := sharedPair(t, true)
	for _, d := range []string{"s", "t"} {
		require.NoError(t, os.MkdirAll(filepath.Join(a, "base", d), 0o755))
	}
	var st unix.Stat_t
	var calls atomic.Int32
	lookup := make(chan error, 1)
	hook := func(dir string) {
		if !strings.HasPrefix(dir, v.backing+"/") || calls.Add(1) > 1 {
			return
		}
		// b has never used t: its lookup in t reads t's record now.
		go func() {
			_, err := os.Lstat(filepath.Join(b, "base", "t", "x"))
			lookup <- err
		}()
		// Return once the lookup waits for the lock or has answered.
		if err := unix.Stat(filepath.Join(v.backing, ReservedName, NamespaceLockName), &st); err != nil {
			t.Errorf("stat lock file: %v", err)
			return
		}
		for len(lookup) == 0 && !lockWaiter(t, st.Ino) {
			runtime.Gosched()
		}
	}
	recordHook.Store(&hook)
	t.Cleanup(func() { recordHook.Store(nil) })
	// os.Rename refuses an existing directory as the target.
	require.NoError(t, unix.Rename(filepath.Join(a, "base", "s"), filepath.Join(a, "base", "t")))
	recordHook.Store(nil)
	require.Equal(t, int32(1), calls.Load())
	assert.ErrorIs(t, <-lookup, syscall.ENOENT, "the lookup in t")
	assert.NotContains(t, v.logs.String(), `"level":"warn"`)
}

// lockWaiter reports whether /proc/locks lists a request that waits for a
// lock on the file with inode number ino.
func lockWaiter(t *testing.T, ino uint64) bool {
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Errorf("read /proc/locks: %v", err)
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "->") && strings.Contains(line, fmt.Sprintf(":%d ", ino)) {
			return true
		}
	}
	return false
}

// TestSharedCreateInDirReplacedByFile creates a file, through a descriptor
// of a directory, after another mount removed the directory and created a
// file of the same name: the directory is gone (ENOENT), not damaged
// (EIO), and no warning about a damaged record is logged.
func TestSharedCreateInDirReplacedByFile(t *testing.T) {
	v, a, b := sharedPair(t, true)
	require.NoError(t, os.MkdirAll(filepath.Join(a, "base", "e"), 0o755))
	dir, err := os.Open(filepath.Join(b, "base", "e"))
	require.NoError(t, err)
	defer dir.Close()
	require.NoError(t, os.Remove(filepath.Join(a, "base", "e")))
	require.NoError(t, os.WriteFile(filepath.Join(a, "base", "e"), []byte("file"), 0o644))

	_, err = unix.Openat(int(dir.Fd()), "x", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	assert.ErrorIs(t, err, unix.ENOENT)
	assert.NotContains(t, v.logs.String(), `"level":"warn"`)
}
