//go:build linux

package fs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests of this file race namespace changes of two shared mounts of
// one volume with encrypted names, each side for a fixed number of rounds.
// Without the namespace lock (nslock.go) each of them loses data or leaves
// debris within those rounds on an idle machine and a loaded one alike;
// with it, what they check holds whatever the interleaving.

// nsRounds is the number of rounds each side of a race runs.
const nsRounds = 400

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
// one in one mount while the other moves that empty directory away: every
// directory must keep its record and stay readable and writable.
func TestSharedRenameOverEmptyDirRace(t *testing.T) {
	v, a, b := sharedPair(t, true)
	require.NoError(t, os.MkdirAll(filepath.Join(a, "base", "t"), 0o755))
	var wg sync.WaitGroup
	wg.Go(func() {
		for range nsRounds {
			_ = os.Mkdir(filepath.Join(a, "base", "s"), 0o755)
			_ = os.Rename(filepath.Join(a, "base", "s"), filepath.Join(a, "base", "t"))
		}
	})
	wg.Go(func() {
		for i := range nsRounds {
			_ = os.Rename(filepath.Join(b, "base", "t"), filepath.Join(b, "base", fmt.Sprintf("keep%d", i)))
		}
	})
	wg.Wait()

	ents, err := os.ReadDir(filepath.Join(b, "base"))
	require.NoError(t, err)
	require.NotEmpty(t, ents)
	for _, e := range ents {
		d := filepath.Join(b, "base", e.Name())
		_, err := os.ReadDir(d)
		assert.NoError(t, err, "directory %s lost its record", e.Name())
		assert.NoError(t, os.WriteFile(filepath.Join(d, "f"), []byte(e.Name()), 0o644))
		got, err := os.ReadFile(filepath.Join(a, "base", e.Name(), "f"))
		if assert.NoError(t, err) {
			assert.Equal(t, e.Name(), string(got))
		}
	}
	assert.Empty(t, tmpLeftovers(t, v.backing))
}

// TestSharedCreateInReplacedDirRace removes and remakes a directory in one
// mount while the other creates files in it: every file whose creation
// succeeded reads back through the first mount, and the directory can be
// removed at the end once the files are.
func TestSharedCreateInReplacedDirRace(t *testing.T) {
	v, a, b := sharedPair(t, true)
	require.NoError(t, os.Mkdir(filepath.Join(a, "base"), 0o755))
	var wg sync.WaitGroup
	wg.Go(func() {
		for range nsRounds {
			_ = os.Mkdir(filepath.Join(a, "base", "d"), 0o755)
			_ = os.Remove(filepath.Join(a, "base", "d"))
		}
	})
	var lost []string
	created := 0
	wg.Go(func() {
		for i := range nsRounds {
			p := filepath.Join(b, "base", "d", fmt.Sprintf("f%d", i))
			want := fmt.Sprintf("payload %d", i)
			if err := os.WriteFile(p, []byte(want), 0o644); err != nil {
				continue // the directory was not there: no data to lose
			}
			created++
			got, err := os.ReadFile(filepath.Join(a, "base", "d", fmt.Sprintf("f%d", i)))
			if err != nil || string(got) != want {
				lost = append(lost, fmt.Sprintf("f%d: %q, %v", i, got, err))
			}
			if err := os.Remove(p); err != nil {
				lost = append(lost, fmt.Sprintf("unlink f%d: %v", i, err))
			}
		}
	})
	wg.Wait()
	t.Logf("%d files created", created)
	assert.Empty(t, lost, "files created but not readable through the other mount")
	err := os.Remove(filepath.Join(a, "base", "d"))
	if !errors.Is(err, os.ErrNotExist) {
		assert.NoError(t, err, "the directory holds hidden entries")
	}
	assert.Empty(t, tmpLeftovers(t, v.backing))
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
