//go:build linux

package fs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

// undoDir holds the mount's descriptor of the undo folder, .coffer/undo.
// Every open, creation, listing and removal of an undo record goes through
// it (openat, unlinkat), so that a symbolic link put in place of the
// folder, or of .coffer, after the descriptor was opened is never followed:
// the mount, often root, would otherwise remove or write files elsewhere.
// The descriptor is opened on first use, without following links, and
// opened again only when the folder was removed (see inUndoDir).
type undoDir struct {
	mu   sync.RWMutex
	fd   int
	open bool
}

// undoRel is the undo folder relative to the backing directory.
var undoRel = filepath.Join(ReservedName, content.UndoDir)

// inUndoDir calls fn with the descriptor of the undo folder, which it
// opens on first use. With create, a missing folder is made, and if fn
// fails with ENOENT (an O_CREAT openat in a folder removed since it was
// opened fails so) the folder is opened, or made, again and fn retried
// once. fn runs under a read lock: it must not keep the descriptor.
func (f *filesystem) inUndoDir(create bool, fn func(dfd int) error) error {
	d := &f.undoDir
	d.mu.RLock()
	opened, fd := d.open, d.fd
	var err error
	if opened {
		err = fn(fd)
	}
	d.mu.RUnlock()
	if opened && (!create || !errors.Is(err, unix.ENOENT)) {
		return err
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	// Another caller may have opened it again meanwhile.
	if !d.open || (opened && d.fd == fd) {
		nfd, err := f.openUndoDir(create)
		if err != nil {
			return err
		}
		if d.open {
			_ = unix.Close(d.fd)
		}
		d.fd, d.open = nfd, true
	}
	return fn(d.fd)
}

// openUndoDir opens the undo folder without following a link in any part
// of its path; with create, it makes the folder, and .coffer, if missing.
func (f *filesystem) openUndoDir(create bool) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	fd, err := f.openat(undoRel, flags, 0)
	if !create || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	for _, rel := range []string{ReservedName, undoRel} {
		if err := f.mkdirat(rel); err != nil {
			return -1, err
		}
	}
	return f.openat(undoRel, flags, 0)
}

// mkdirat makes the folder rel (mode 0700) if it is missing, in its parent
// opened without following links.
func (f *filesystem) mkdirat(rel string) error {
	pfd, err := f.openat(filepath.Dir(rel), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, filepath.Base(rel), 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// createUndo creates this mount's undo record of file id, empty, and
// returns it open for writing. It never opens an existing entry for
// writing. One left by a crash holds pre-images that the record about to
// be written replaces anyway (the latest overwrite of a file always
// replaces its record); one planted by someone who can write the backing
// directory may be a hard link to a file elsewhere, which root would
// overwrite. Either is unlinked, which leaves a linked file untouched, and
// a fresh record made in its place.
func (f *filesystem) createUndo(id content.FileID) (int, error) {
	name := f.undoName(id)
	fd := -1
	var stuck error
	err := f.inUndoDir(true, func(dfd int) error {
		var err error
		for range 3 {
			fd, err = unix.Openat(dfd, name,
				unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			if !errors.Is(err, unix.EEXIST) {
				return err
			}
			if err = unix.Unlinkat(dfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				stuck = err
				return err
			}
		}
		return err
	})
	if stuck != nil {
		f.log.Warn().Str("record", filepath.Join(undoRel, name)).Str("reason", stuck.Error()).
			Msg("cannot replace the entry in the place of an undo record; refusing the overwrite " +
				"(remove the entry: coffer fsck reports it)")
		return -1, fmt.Errorf("failed to replace undo record %s: %v: %w", name, stuck, syscall.EIO)
	}
	if err != nil {
		return -1, fmt.Errorf("failed to create undo record: %w", err)
	}
	return fd, nil
}

// undoName returns the name of this mount's undo record of file id.
func (f *filesystem) undoName(id content.FileID) string {
	if f.undoTag != "" {
		return content.UndoTagName(id, f.undoTag)
	}
	return content.UndoName(id)
}

// unlinkUndo removes the undo record name, if there is one.
func (f *filesystem) unlinkUndo(name string) error {
	err := f.inUndoDir(false, func(dfd int) error {
		return unix.Unlinkat(dfd, name, 0)
	})
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// openUndo opens the undo record name for reading, without following a
// link and without waiting on a pipe planted in its place.
func (f *filesystem) openUndo(name string) (int, error) {
	fd := -1
	err := f.inUndoDir(false, func(dfd int) error {
		var err error
		fd, err = unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// undoNames returns the names of every undo record of file id, this
// mount's or another's.
func (f *filesystem) undoNames(id content.FileID) []string {
	base := content.UndoName(id)
	names := []string{base}
	var ents []string
	_ = f.inUndoDir(false, func(dfd int) error {
		var err error
		ents, err = listDir(dfd)
		return err
	})
	for _, e := range ents {
		if strings.HasPrefix(e, base+".") {
			names = append(names, e)
		}
	}
	return names
}

// listDir returns the names in the folder dfd, through a descriptor of its
// own: dfd's file offset is shared by everyone who uses it.
func listDir(dfd int) ([]string, error) {
	fd, err := unix.Openat(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	d := os.NewFile(uintptr(fd), content.UndoDir)
	defer d.Close()
	return d.Readdirnames(-1)
}

// openUndoDirAt opens backing's undo folder, following no link below
// backing itself.
func openUndoDirAt(backing string) (int, error) {
	fd, err := unix.Open(backing, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, name := range []string{ReservedName, content.UndoDir} {
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		_ = unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}
