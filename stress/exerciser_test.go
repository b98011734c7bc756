//go:build linux

package stress

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var exerciserSeed = flag.Uint64("stress.seed", 0, "seed of the exerciser's worker 0 (0: from the clock, logged)")

// TestExerciser runs the exerciser on a coffer mount against a plain
// directory: 20 000 ops in make test, 1 000 000 in make soak, shared by four
// worker processes with three files each. Every op compares the size and
// the blocks around what it touched; every fourth op compares the whole
// file through a new descriptor (every op would take four times as long).
// Afterwards it remounts and compares every file again, and checks that
// the mount logged no warning.
func TestExerciser(t *testing.T) {
	v := newVolume(t, "")
	ref := t.TempDir()
	seed := *exerciserSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano()) & (1<<48 - 1)
	}
	ops := scale(20000, 1000000)
	t.Logf("exerciser seeds %d..%d, %d ops (rerun with -args -stress.seed=%d)", seed, seed+3, ops, seed)

	saved := filepath.Join(t.TempDir(), "minimal.ops")
	out, err := runExerciser(t, scaleDuration(20*time.Minute, 4*time.Hour),
		"-dir", v.mnt, "-ref", ref, "-seed", strconv.FormatUint(seed, 10),
		"-ops", strconv.Itoa(ops), "-procs", "4", "-files", "3", "-max-size", strconv.Itoa(2<<20),
		"-full-every", "4", "-keep", "-save", saved)
	t.Log(out)
	require.NoError(t, err, "the exerciser failed; its output above has the seed and the minimal log")
	assert.Equal(t, 4, strings.Count(out, "no mismatch"), "every worker reports")

	v.unmount(t)
	v.mount(t)
	compareTrees(t, ref, v.mnt)
	assert.Empty(t, v.warnings(""), "a clean run logs no warning")
}

// runExerciser runs this test binary as the exerciser with args.
func runExerciser(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=exerciser")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	registerProc(cmd)
	err := cmd.Run()
	return out.String(), err
}

// compareTrees checks that every regular file of want has the same
// contents in got, and that got has no other file.
func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	wantNames := fileNames(t, want)
	require.Equal(t, wantNames, fileNames(t, got), "file names")
	for _, name := range wantNames {
		w, err := os.ReadFile(filepath.Join(want, name))
		require.NoError(t, err)
		g, err := os.ReadFile(filepath.Join(got, name))
		require.NoError(t, err, name)
		assert.True(t, bytes.Equal(w, g), "%s: %s", name, diff(w, g, 0))
	}
}

func fileNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names
}

func scaleDuration(short, long time.Duration) time.Duration {
	if *soak {
		return long
	}
	return short
}

// TestExerciserShrinksAPlantedBug plants a bug in the side under test (two
// plain directories, so no mount is needed) and checks that the exerciser
// reports it with the seed and a short operation log that still fails when
// replayed with -replay.
func TestExerciserShrinksAPlantedBug(t *testing.T) {
	tests := []struct {
		name  string
		fault func(*side, Op, []byte) result
		most  int // longest acceptable minimal log
	}{
		{"writes crossing a block boundary lose their last byte", func(s *side, o Op, d []byte) result {
			if o.Kind == Write && o.Off/BlockSize != (o.Off+o.Len-1)/BlockSize && o.Len > 1 {
				d = d[:len(d)-1]
			}
			return s.apply(o, d)
		}, 1},
		{"truncation to an odd size is one byte short", func(s *side, o Op, d []byte) result {
			if o.Kind == Truncate && o.Off%2 == 1 {
				o.Off--
			}
			return s.apply(o, d)
		}, 1},
		{"mmap writes with msync are lost", func(s *side, o Op, d []byte) result {
			if o.Kind == MmapWrite && o.Arg == 1 {
				r := s.apply(Op{Kind: MmapRead, File: o.File, Off: o.Off, Len: o.Len}, nil)
				return result{n: r.n, err: r.err}
			}
			return s.apply(o, d)
		}, 2},
		{"bytes cut by a truncation reappear when the file grows", staleTail(), 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			save := filepath.Join(t.TempDir(), "minimal.ops")
			cfg := Config{Dir: t.TempDir(), Ref: t.TempDir(), Prefix: "t-", Seed: 7, Ops: 3000,
				Files: 3, MaxSize: 1 << 20, FullEvery: 1, ShrinkReplays: 500,
				ShrinkTime: time.Minute, Out: &out, Save: save, fault: tc.fault}
			if tc.name == "bytes cut by a truncation reappear when the file grows" {
				cfg.fault = staleTail() // stateful: a fresh one for the replays below too
			}
			rep := Run(cfg)
			t.Log(out.String())
			require.NoError(t, rep.Err)
			require.NotNil(t, rep.Mismatch, "the planted bug was not found")
			require.True(t, rep.Reproduced)
			assert.LessOrEqual(t, len(rep.Minimal), tc.most, "minimal log:\n%s", formatOps(rep.Minimal))
			assert.Contains(t, out.String(), "seed 7")

			// The saved log fails again, through the command line.
			text, err := os.ReadFile(save)
			require.NoError(t, err)
			ops, err := parseOps(string(text))
			require.NoError(t, err)
			assert.Equal(t, rep.Minimal, ops)
			cfg.Prefix = "again-"
			m, err := cfg.replay(ops, rep.MinimalFiles, 0)
			require.NoError(t, err)
			assert.NotNil(t, m, "the minimal log no longer fails")
		})
	}
}

// staleTail returns a fault that keeps the bytes a truncation cuts from the
// middle of a block and writes them back after the next op that grows the
// file, where zeros belong: the classic bug of an encrypting file system
// that does not re-encrypt the last block on truncation. Only a sequence of
// at least a write, a truncation and a growth shows it.
func staleTail() func(*side, Op, []byte) result {
	type cut struct {
		at   int64
		data []byte
	}
	cuts := map[string]cut{}
	return func(s *side, o Op, d []byte) result {
		f := s.files[o.File]
		size, _ := s.size(o.File)
		if o.Kind == Truncate && o.Off < size && o.Off%BlockSize != 0 {
			end := min(size, (o.Off/BlockSize+1)*BlockSize)
			cuts[f.path] = cut{o.Off, preadAll(f.ro, end-o.Off, o.Off).data}
		}
		r := s.apply(o, d)
		grown, _ := s.size(o.File)
		if c, ok := cuts[f.path]; ok && o.Kind != Truncate && grown > c.at {
			n := min(int64(len(c.data)), grown-c.at)
			if o.Kind == Write || o.Kind == Allocate {
				n = min(n, max(0, o.Off-c.at)) // the op itself overwrote the rest
			}
			pwriteAll(f.rw, c.data[:n], c.at)
			delete(cuts, f.path)
		}
		return r
	}
}

// TestExerciserCommandLine checks the command's flags, a clean run with
// several workers on plain directories, and -replay.
func TestExerciserCommandLine(t *testing.T) {
	dir, ref := t.TempDir(), t.TempDir()
	var out bytes.Buffer
	code := Main([]string{"-dir", dir}, &out, &out)
	assert.Equal(t, ExitUsage, code, out.String())

	got, err := runExerciser(t, 5*time.Minute, "-dir", dir, "-ref", ref, "-seed", "11",
		"-ops", "600", "-procs", "3", "-files", "2", "-max-size", "1048576")
	require.NoError(t, err, got)
	for w := range 3 {
		assert.Contains(t, got, fmt.Sprintf("seed %d (files w%d-*)", 11+w, w))
	}

	log := filepath.Join(t.TempDir(), "ops")
	require.NoError(t, os.WriteFile(log, []byte("# a comment\n"+
		"write f=1 off=4090 len=20 seed=3 arg=0\n"+
		"truncate f=1 off=4093 len=0 seed=4 arg=1\n"+
		"mmap-write f=1 off=4000 len=200 seed=5 arg=1\n"), 0o644))
	out.Reset()
	code = Main([]string{"-dir", dir, "-ref", ref, "-replay", log}, &out, &out)
	assert.Equal(t, ExitOK, code, out.String())
	assert.Contains(t, out.String(), "3 ops, no mismatch")
}

func TestParseOp(t *testing.T) {
	for k := range numKinds {
		o := Op{Kind: k, File: 2, Off: 4095, Len: 300 << 10, Seed: 1<<64 - 1, Arg: 1}
		got, err := ParseOp(o.String())
		require.NoError(t, err)
		assert.Equal(t, o, got)
	}
	for _, bad := range []string{"", "write", "scribble f=0 off=0 len=0 seed=0 arg=0",
		"write f=-1 off=0 len=0 seed=0 arg=0", "write f=0 off=x len=0 seed=0 arg=0"} {
		_, err := ParseOp(bad)
		assert.Error(t, err, bad)
	}
}

func TestMinimize(t *testing.T) {
	seq := make([]int, 1000)
	for i := range seq {
		seq[i] = i
	}
	tests := []struct {
		name  string
		fails func([]int) bool
		want  []int
	}{
		{"one culprit", func(s []int) bool { return contains(s, 617) }, []int{617}},
		{"two culprits in order", func(s []int) bool {
			return contains(s, 3) && contains(s, 998)
		}, []int{3, 998}},
		{"three culprits", func(s []int) bool {
			return contains(s, 10) && contains(s, 500) && contains(s, 501)
		}, []int{10, 500, 501}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &budget{replays: 10000, deadline: time.Now().Add(time.Minute)}
			assert.Equal(t, tc.want, minimize(seq, tc.fails, b))
		})
	}

	t.Run("budget", func(t *testing.T) {
		calls := 0
		b := &budget{replays: 5, deadline: time.Now().Add(time.Minute)}
		got := minimize(seq, func(s []int) bool { calls++; return contains(s, 1) }, b)
		assert.LessOrEqual(t, calls, 5)
		assert.True(t, contains(got, 1))
	})
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
