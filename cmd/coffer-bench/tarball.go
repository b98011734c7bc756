//go:build linux

package main

import (
	"archive/tar"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// tarball is UNTAR's input, an uncompressed tar of a source tree, with what
// the extracted tree must contain.
type tarball struct {
	path  string
	top   string              // the tree's top directory inside the tar
	files map[string][32]byte // SHA-256 of each regular file, by path below the top's parent
	dirs  []string            // directories, the top included, by the same path
	size  int64               // bytes in regular files
}

// makeTarball writes a tar of the tree src to dst (uncompressed, so that
// UNTAR measures the file system, not gzip) and records the content of every
// file. Only directories and regular files are archived.
func makeTarball(src, dst string) (*tarball, error) {
	out, err := os.Create(dst)
	if err != nil {
		return nil, fmt.Errorf("failed to create tarball: %w", err)
	}
	t := &tarball{path: dst, top: filepath.Base(src), files: map[string][32]byte{}}
	tw := tar.NewWriter(out)

	walkErr := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(filepath.Dir(src), p)
		if err != nil {
			return err
		}
		return t.add(tw, p, rel, d)
	})
	err = walkErr
	if err == nil {
		err = tw.Close()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("failed to write tarball of %s: %w", src, err)
	}
	return t, nil
}

// add archives one walked entry: rel is its name in the tar.
func (t *tarball) add(tw *tar.Writer, p, rel string, d fs.DirEntry) error {
	if !d.Type().IsDir() && !d.Type().IsRegular() {
		return nil
	}
	info, err := d.Info()
	if err != nil {
		return err
	}
	hdr, err := tar.FileInfoHeader(info, "")
	if err != nil {
		return err
	}
	hdr.Name = filepath.ToSlash(rel)
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	if d.IsDir() {
		hdr.Name += "/"
		t.dirs = append(t.dirs, rel)
		return tw.WriteHeader(hdr)
	}

	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tw, h), f)
	if err != nil {
		return err
	}
	t.files[rel] = [32]byte(h.Sum(nil))
	t.size += n
	return nil
}

// listed returns how many regular files and directories "ls -lR" of the
// top lists: those without a hidden name on their path, the top excluded.
func (t *tarball) listed() (files, dirs int) {
	for p := range t.files {
		if !hiddenPath(p) {
			files++
		}
	}
	for _, p := range t.dirs {
		if p != t.top && !hiddenPath(p) {
			dirs++
		}
	}
	return files, dirs
}

// hiddenPath reports whether a slash-separated path has a component that
// starts with a dot.
func hiddenPath(p string) bool {
	for _, c := range strings.Split(filepath.ToSlash(p), "/") {
		if strings.HasPrefix(c, ".") {
			return true
		}
	}
	return false
}
