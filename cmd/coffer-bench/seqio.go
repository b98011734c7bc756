//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// seqFile is the name of the WRITE/READ file in the mount.
const seqFile = "bench-seq.dat"

// measureWrite writes the file in 128 KiB writes, fsyncs and closes it, and
// returns MB/s.
func measureWrite(ctx context.Context, env *stepEnv) (float64, error) {
	path := filepath.Join(env.mnt, seqFile)
	start := time.Now()
	if err := writePattern(ctx, path, env.data.seq, env.opts.writeSize); err != nil {
		return 0, err
	}
	return mbPerSecond(env.opts.writeSize, time.Since(start)), nil
}

// writePattern creates path with size bytes of p in 128 KiB writes, then
// fsyncs and closes it.
func writePattern(ctx context.Context, path string, p *pattern, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("failed to create %s: %w", path, err)
	}
	buf := make([]byte, chunkSize)
	for off := int64(0); off < size; off += chunkSize {
		if err := ctx.Err(); err != nil {
			f.Close()
			return err
		}
		p.fill(buf, uint64(off/patternBlock))
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return fmt.Errorf("failed to write %s at %d: %w", path, off, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("failed to fsync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close %s: %w", path, err)
	}
	return nil
}

// measureRead reads the file WRITE left in 128 KiB reads from a cold cache,
// checks every block, and returns MB/s.
func measureRead(ctx context.Context, env *stepEnv) (float64, error) {
	path := filepath.Join(env.mnt, seqFile)
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("failed to open %s: %w", path, err)
	}
	defer f.Close()
	if err := evict(f); err != nil {
		return 0, err
	}

	start := time.Now()
	n, err := readPattern(ctx, f, env.data.seq)
	if err != nil {
		return 0, inPhase(path, err)
	}
	d := time.Since(start)
	if n != env.opts.writeSize {
		return 0, &wrongDataError{what: fmt.Sprintf("%s: read %d bytes, wrote %d", path, n, env.opts.writeSize)}
	}
	return mbPerSecond(n, d), nil
}

// readPattern reads r to the end in 128 KiB reads, checks it against p, and
// returns the number of bytes read.
func readPattern(ctx context.Context, r io.Reader, p *pattern) (int64, error) {
	buf := make([]byte, chunkSize)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if cerr := p.check(buf[:n], uint64(off/patternBlock)); cerr != nil {
				return off, cerr
			}
			off += int64(n)
		}
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return off, nil
		case err != nil:
			return off, fmt.Errorf("failed to read at %d: %w", off, err)
		}
	}
}

// removeSeqFile deletes the WRITE/READ file.
func removeSeqFile(_ context.Context, env *stepEnv) error {
	return os.Remove(filepath.Join(env.mnt, seqFile))
}
