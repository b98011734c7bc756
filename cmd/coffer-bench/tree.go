//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// measureUntar extracts the tarball into the mount with tar(1) and returns
// seconds. CHECKSUM checks what it extracted.
func measureUntar(ctx context.Context, env *stepEnv) (float64, error) {
	start := time.Now()
	if err := runTool(ctx, "tar", "-xf", env.data.tree.path, "-C", env.mnt); err != nil {
		return 0, err
	}
	return time.Since(start).Seconds(), nil
}

// measureChecksum reads and hashes every file of the extracted tree, checks
// each against the source, and returns seconds.
func measureChecksum(ctx context.Context, env *stepEnv) (float64, error) {
	t := env.data.tree
	start := time.Now()
	seen, err := checksumTree(ctx, env.mnt, t)
	if err != nil {
		return 0, err
	}
	d := time.Since(start)
	if seen != len(t.files) {
		return 0, &wrongDataError{what: fmt.Sprintf("tree has %d files, the tarball %d", seen, len(t.files))}
	}
	return d.Seconds(), nil
}

// checksumTree hashes every regular file below root/t.top, compares it with
// the tarball's, and returns how many it checked.
func checksumTree(ctx context.Context, root string, t *tarball) (int, error) {
	buf := make([]byte, chunkSize)
	seen := 0
	err := filepath.WalkDir(filepath.Join(root, t.top), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		want, ok := t.files[rel]
		if !ok {
			return &wrongDataError{what: "unexpected file " + p}
		}
		got, err := hashFile(p, buf)
		if err != nil {
			return err
		}
		if got != want {
			return &wrongDataError{what: "content of " + p + " differs from the source"}
		}
		seen++
		return nil
	})
	return seen, err
}

// hashFile returns the SHA-256 of the file at p, read with buf.
func hashFile(p string, buf []byte) ([32]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, buf); err != nil {
		return [32]byte{}, fmt.Errorf("failed to read %s: %w", p, err)
	}
	return [32]byte(h.Sum(nil)), nil
}

// measureLs runs "ls -lR" on the tree, checks that it listed every file and
// directory that is not hidden, and returns seconds.
func measureLs(ctx context.Context, env *stepEnv) (float64, error) {
	t := env.data.tree
	cmd := exec.CommandContext(ctx, "ls", "-lR", filepath.Join(env.mnt, t.top))
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout = &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("failed to run ls -lR: %w", err)
	}
	d := time.Since(start)

	files, dirs := countListing(&out)
	wantFiles, wantDirs := t.listed()
	if files != wantFiles || dirs != wantDirs {
		return 0, &wrongDataError{what: fmt.Sprintf("ls -lR listed %d files and %d directories, want %d and %d",
			files, dirs, wantFiles, wantDirs)}
	}
	return d.Seconds(), nil
}

// countListing counts the regular files and directories in "ls -l" output.
func countListing(r io.Reader) (files, dirs int) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		switch {
		case strings.HasPrefix(sc.Text(), "-"):
			files++
		case strings.HasPrefix(sc.Text(), "d"):
			dirs++
		}
	}
	return files, dirs
}

// measureRm removes the tree with "rm -rf", checks that it is gone, and
// returns seconds.
func measureRm(ctx context.Context, env *stepEnv) (float64, error) {
	top := filepath.Join(env.mnt, env.data.tree.top)
	start := time.Now()
	if err := runTool(ctx, "rm", "-rf", top); err != nil {
		return 0, err
	}
	d := time.Since(start)
	if _, err := os.Lstat(top); !errors.Is(err, fs.ErrNotExist) {
		return 0, &wrongDataError{what: fmt.Sprintf("%s still exists after rm -rf (%v)", top, err)}
	}
	return d.Seconds(), nil
}
