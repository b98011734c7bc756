//go:build linux

package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// plainEnv returns a step environment whose "mount" is a plain directory,
// with a small tree to untar.
func plainEnv(t *testing.T) *stepEnv {
	t.Helper()
	src := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(src, "sub", ".hidden"), 0o755))
	for _, f := range []string{"a.go", "sub/b.txt", "sub/.hidden/c"} {
		require.NoError(t, os.WriteFile(filepath.Join(src, f), []byte("content of "+f), 0o644))
	}
	tb, err := makeTarball(src, filepath.Join(t.TempDir(), "tree.tar"))
	require.NoError(t, err)

	opts := &options{writeSize: 4 * chunkSize, randSize: 2 * chunkSize, randDuration: 50 * time.Millisecond}
	data := &dataSet{seq: newPattern([32]byte{1}, 1), rand: newPattern([32]byte{1}, 2), tree: tb}
	return &stepEnv{mnt: t.TempDir(), opts: opts, data: data}
}

func TestPhasesOnPlainDirectory(t *testing.T) {
	ctx := context.Background()
	env := plainEnv(t)
	all := phases()
	for _, name := range allPhases {
		p := all[name]
		if p.prepare != nil {
			require.NoError(t, p.prepare(ctx, env), name)
		}
		v, err := p.measure(ctx, env)
		require.NoError(t, err, name)
		assert.Greater(t, v, 0.0, name)
		if p.after != nil {
			require.NoError(t, p.after(ctx, env), name)
		}
	}
	entries, err := os.ReadDir(env.mnt)
	require.NoError(t, err)
	assert.Empty(t, entries, "the phases leave nothing behind")
}

func TestPhasesCatchWrongData(t *testing.T) {
	tests := []struct {
		name    string
		setup   []string // phases run first
		corrupt func(t *testing.T, env *stepEnv)
		phase   string
	}{
		{
			name:  "flipped byte in the sequential file",
			setup: []string{phaseWrite},
			corrupt: func(t *testing.T, env *stepEnv) {
				flipByte(t, filepath.Join(env.mnt, seqFile), chunkSize+5000)
			},
			phase: phaseRead,
		},
		{
			name:  "truncated sequential file",
			setup: []string{phaseWrite},
			corrupt: func(t *testing.T, env *stepEnv) {
				require.NoError(t, os.Truncate(filepath.Join(env.mnt, seqFile), chunkSize))
			},
			phase: phaseRead,
		},
		{
			name:  "changed file in the tree",
			setup: []string{phaseUntar},
			corrupt: func(t *testing.T, env *stepEnv) {
				flipByte(t, filepath.Join(env.mnt, "tree", "sub", "b.txt"), 3)
			},
			phase: phaseChecksum,
		},
		{
			name:  "changed hidden file in the tree",
			setup: []string{phaseUntar},
			corrupt: func(t *testing.T, env *stepEnv) {
				flipByte(t, filepath.Join(env.mnt, "tree", "sub", ".hidden", "c"), 0)
			},
			phase: phaseChecksum,
		},
		{
			name:  "missing file in the listing",
			setup: []string{phaseUntar},
			corrupt: func(t *testing.T, env *stepEnv) {
				require.NoError(t, os.Remove(filepath.Join(env.mnt, "tree", "a.go")))
			},
			phase: phaseLs,
		},
	}
	all := phases()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			env := plainEnv(t)
			for _, s := range tt.setup {
				_, err := all[s].measure(ctx, env)
				require.NoError(t, err)
			}
			tt.corrupt(t, env)

			_, err := all[tt.phase].measure(ctx, env)
			var wrong *wrongDataError
			assert.True(t, errors.As(err, &wrong), "want a wrongDataError, got %v", err)
		})
	}
}

func TestRandReadCatchesWrongData(t *testing.T) {
	ctx := context.Background()
	env := plainEnv(t)
	p := phases()[phaseRandRead]
	require.NoError(t, p.prepare(ctx, env))
	// Every block is damaged, so any random read finds one.
	path := filepath.Join(env.mnt, randFile)
	for off := int64(0); off < env.opts.randSize; off += patternBlock {
		flipByte(t, path, off+100)
	}

	_, err := p.measure(ctx, env)
	var wrong *wrongDataError
	assert.True(t, errors.As(err, &wrong), "want a wrongDataError, got %v", err)
}

// flipByte inverts one byte of a file.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}
