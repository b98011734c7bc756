//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// randFile is the name of the RANDREAD file in the mount.
const randFile = "bench-rand.dat"

// prepareRandRead writes the file RANDREAD reads.
func prepareRandRead(ctx context.Context, env *stepEnv) error {
	return writePattern(ctx, filepath.Join(env.mnt, randFile), env.data.rand, env.opts.randSize)
}

// measureRandRead reads random 4 KiB blocks of the file with pread for the
// configured time, one at a time, checks each, and returns reads per second.
//
// The file is opened with O_DIRECT so that every read reaches the file
// system daemon instead of the mount's page cache, which would hold the whole
// file after a few seconds; the daemons themselves read their backing files
// through its page cache (see bufferedNode).
func measureRandRead(ctx context.Context, env *stepEnv) (float64, error) {
	path := filepath.Join(env.mnt, randFile)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("failed to open %s with O_DIRECT: %w", path, err)
	}
	defer unix.Close(fd)

	buf, err := alignedBuffer(patternBlock)
	if err != nil {
		return 0, err
	}
	defer unix.Munmap(buf)

	blocks := uint64(env.opts.randSize / patternBlock)
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	start := time.Now()
	deadline := start.Add(env.opts.randDuration)
	var n int64
	for ; ; n++ {
		if n%64 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
			break
		}
		b := rng.Uint64N(blocks)
		if err := preadBlock(fd, buf, b); err != nil {
			return 0, inPhase(path, err)
		}
		if err := env.data.rand.check(buf, b); err != nil {
			return 0, inPhase(path, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// preadBlock reads block b of fd into buf, which must be filled completely.
func preadBlock(fd int, buf []byte, b uint64) error {
	off := int64(b * patternBlock)
	n, err := unix.Pread(fd, buf, off)
	if err != nil {
		return fmt.Errorf("failed to read at %d: %w", off, err)
	}
	if n != len(buf) {
		return &wrongDataError{what: fmt.Sprintf("short read at %d: %d bytes", off, n)}
	}
	return nil
}

// alignedBuffer returns n bytes of anonymous memory, page-aligned as
// O_DIRECT wants. Release it with unix.Munmap.
func alignedBuffer(n int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("failed to allocate an aligned buffer: %w", err)
	}
	return b, nil
}

// removeRandFile deletes the RANDREAD file.
func removeRandFile(_ context.Context, env *stepEnv) error {
	return os.Remove(filepath.Join(env.mnt, randFile))
}
