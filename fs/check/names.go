//go:build linux

package check

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	cofferfs "github.com/cofferfs/coffer/fs"
	"github.com/cofferfs/coffer/fs/content"
	"github.com/cofferfs/coffer/fs/names"
)

// maxSidecar bounds the sidecars and temporary files read: a sidecar holds
// the ciphertext of a name of at most names.MaxName bytes.
const maxSidecar = 4 * names.MaxName

// restoreRecord is what the administrator can do about a directory whose
// record is missing, damaged or not its own.
const restoreRecord = "the files under it are intact: restore this directory's " +
	names.RecordName + " from a backup of the backing directory"

// entry is one entry of a backing directory under check.
type entry struct {
	name  string
	typ   fs.FileMode
	plain string // the decrypted name; "" if it does not decrypt
}

// walkNames checks the volume's directories, names and files, starting at
// the root: every directory's record, every entry name, every long name's
// sidecar, and coffer's leftovers.
func (c *checker) walkNames() error {
	return c.dir(".", ".", true)
}

// dir checks the backing directory rel, whose path in the mount is path
// (known says whether it is: false if a name on the way does not decrypt),
// and everything under it.
func (c *checker) dir(rel, path string, known bool) error {
	if !known {
		path = ""
	}
	ents, err := os.ReadDir(c.abs(rel))
	if err != nil {
		c.addAt(rel, path, KindIO, RepairNone, "failed to list directory: %v", err)
		return nil
	}
	present := make(map[string]bool, len(ents))
	for _, e := range ents {
		present[e.Name()] = true
	}
	key := c.dirKey(rel, path)

	var list []entry
	var failed []entry
	var failure []error
	tried := 0
	for _, e := range ents {
		name := e.Name()
		erel := filepath.Join(rel, name)
		switch {
		case name == names.RecordName || (rel == "." && name == cofferfs.ReservedName):
			continue
		case strings.HasPrefix(name, names.TmpPrefix):
			c.temporary(erel, e.Type())
			continue
		case strings.HasPrefix(name, names.ReencryptPrefix) && e.Type().IsRegular():
			c.reencryptTemporary(erel)
			continue
		case isSidecar(name):
			if !present[strings.TrimSuffix(name, names.SidecarSuffix)] {
				c.orphanSidecar(erel)
			}
			continue
		case names.IsLong(name):
			en := entry{name: name, typ: e.Type()}
			sc, err := readLimited(c.abs(filepath.Join(rel, names.Sidecar(name))), maxSidecar)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				c.addAt(erel, "", KindSidecar, RepairNone,
					"the sidecar %s holding this long name is missing: the mount does not list the entry%s; "+
						"restore the sidecar from a backup of the backing directory",
					names.Sidecar(name), under(e.Type()))
			case err != nil:
				c.addAt(erel, "", KindSidecar, RepairNone,
					"the sidecar %s holding this long name cannot be read (%v): the mount does not list the entry%s; "+
						"restore the sidecar from a backup of the backing directory",
					names.Sidecar(name), err, under(e.Type()))
			case names.LongName(sc) != name:
				c.addAt(erel, "", KindSidecar, RepairNone,
					"the sidecar %s does not hash to this long name: damaged or replaced; the mount does not list "+
						"the entry%s; restore the sidecar from a backup of the backing directory",
					names.Sidecar(name), under(e.Type()))
			case key != nil:
				tried++
				if en.plain, err = key.DecryptLong(name, sc); err != nil {
					failed, failure = append(failed, en), append(failure, err)
				}
			}
			list = append(list, en)
		case strings.HasPrefix(name, "."):
			c.addAt(erel, "", KindName, RepairNone,
				"not a name coffer writes (encrypted names never start with a dot), so not checked further: "+
					"the mount does not list it%s; "+
					"move it out of the backing directory", under(e.Type()))
		default:
			en := entry{name: name, typ: e.Type()}
			if key != nil {
				tried++
				if en.plain, err = key.Decrypt(name); err != nil {
					failed, failure = append(failed, en), append(failure, err)
				}
			}
			list = append(list, en)
		}
	}
	c.badNames(rel, path, tried, failed, failure)

	for _, en := range list {
		erel := filepath.Join(rel, en.name)
		epath, eknown := "", known && en.plain != ""
		if eknown {
			epath = joinPlain(path, en.plain)
		}
		switch {
		case en.typ.IsDir():
			if err := c.dir(erel, epath, eknown); err != nil {
				return err
			}
		case en.typ.IsRegular():
			if c.opts.Progress != nil {
				c.opts.Progress(c.report.Files, erel)
			}
			c.report.Files++
			c.cur, c.curPath = erel, epath
			err := c.file(erel)
			c.cur, c.curPath = "", ""
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// badNames reports the entry names of directory rel that do not decrypt:
// each one, or, when none of the directory's names decrypts, the
// directory's record, which then is not the directory's own.
func (c *checker) badNames(rel, path string, tried int, failed []entry, failure []error) {
	if len(failed) == 0 {
		return
	}
	if len(failed) == tried {
		c.addAt(rel, dirPath(rel, path), KindRecord, RepairNone,
			"the directory record %s decrypts none of the directory's %d entry name(s): it is not this "+
				"directory's own record (swapped with another directory's, or copied from elsewhere) and "+
				"the mount shows the directory as empty; %s",
			names.RecordName, tried, restoreRecord)
		return
	}
	for i, en := range failed {
		c.addAt(filepath.Join(rel, en.name), "", KindName, RepairNone,
			"the name does not decrypt under its directory's key (%v): tampered with, or moved here from "+
				"another directory; the mount does not list it%s; move it back where it came from or "+
				"restore it from a backup", failure[i], under(en.typ))
	}
}

// dirKey reads and unwraps the record of directory rel and returns its name
// key, or nil after reporting why there is none.
func (c *checker) dirKey(rel, path string) *names.Key {
	at := dirPath(rel, path)
	b, err := readLimited(c.abs(filepath.Join(rel, names.RecordName)), names.RecordSize)
	if errors.Is(err, fs.ErrNotExist) {
		c.addAt(rel, at, KindRecord, RepairNone,
			"the directory record %s is missing: the mount cannot list or open anything in this directory "+
				"(I/O error); %s", names.RecordName, restoreRecord)
		return nil
	}
	var rec *names.Record
	if err == nil {
		rec, err = names.ParseRecord(b)
	}
	if err != nil {
		c.addAt(rel, at, KindRecord, RepairNone,
			"the directory record %s is damaged (%v): the mount cannot list or open anything in this "+
				"directory (I/O error); %s", names.RecordName, err, restoreRecord)
		return nil
	}

	var errs []error
	for _, i := range rec.Order() {
		s := rec.Slots[i]
		ad := names.RecordAD(c.opts.VolumeID, rec.ID, s.KeyID, s.Generation)
		secret, err := c.opts.Keys.Unwrap(s.KeyID, s.Wrapped, ad)
		if err != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", i, err))
			continue
		}
		k, err := names.NewKey(secret, rec.ID)
		clear(secret)
		if err != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", i, err))
			continue
		}
		if len(errs) > 0 {
			c.addAt(rel, at, KindSlot, RepairNone,
				"the current key slot of the directory record %s does not unwrap (%v); the other one does, "+
					"and a key rotation rewrites it", names.RecordName, errors.Join(errs...))
		}
		return k
	}
	c.addAt(rel, at, KindRecord, RepairNone,
		"no key slot of the directory record %s unwraps (%v): damaged, or from another volume; the mount "+
			"cannot list or open anything in this directory (I/O error); %s",
		names.RecordName, errors.Join(errs...), restoreRecord)
	return nil
}

// orphanSidecar reports, and with Repair removes, the sidecar rel whose
// long name is gone: an unlink or rename cut by a crash left it.
func (c *checker) orphanSidecar(rel string) {
	p := c.addAt(rel, "", KindSidecar, RepairRemove,
		"the sidecar of a long name that does not exist: left by an interrupted unlink or rename; "+
			"it holds no data and is safe to remove")
	if c.opts.Repair {
		if err := os.Remove(c.abs(rel)); err == nil {
			p.Repaired = true
		} else {
			p.Detail += fmt.Sprintf("; failed to remove it: %v", err)
		}
	}
}

// temporary reports, and with Repair removes, a temporary name left by a
// crash: a sidecar being written (a small file) or a directory being made
// (empty or holding only its record). Anything else under a temporary
// name was not left by coffer and stays.
func (c *checker) temporary(rel string, typ fs.FileMode) {
	abs := c.abs(rel)
	var remove func() error
	var what string
	switch {
	case typ.IsRegular():
		if st, err := os.Lstat(abs); err == nil && st.Size() <= maxSidecar {
			what = "a name sidecar being written"
			remove = func() error { return os.Remove(abs) }
		}
	case typ.IsDir():
		ents, err := os.ReadDir(abs)
		if err == nil && (len(ents) == 0 || len(ents) == 1 && ents[0].Name() == names.RecordName &&
			ents[0].Type().IsRegular()) {
			what = "a directory being made (it holds no data)"
			remove = func() error {
				if err := os.Remove(filepath.Join(abs, names.RecordName)); err != nil &&
					!errors.Is(err, fs.ErrNotExist) {
					return err
				}
				return unix.Rmdir(abs)
			}
		}
	}
	if remove == nil {
		c.addAt(rel, "", KindTemporary, RepairNone,
			"a temporary name of coffer holding more than coffer leaves there: the mount does not list it; "+
				"look at it and move it out of the backing directory")
		return
	}
	p := c.addAt(rel, "", KindTemporary, RepairRemove,
		"left by a crash while the mount wrote %s; safe to remove while the volume is not mounted", what)
	if c.opts.Repair {
		if err := remove(); err == nil {
			p.Repaired = true
		} else {
			p.Detail += fmt.Sprintf("; failed to remove it: %v", err)
		}
	}
}

// reencryptTemporary reports, and with Repair removes, the copy of a file
// that an interrupted coffer rotate --reencrypt was writing: the original
// is still under its own name, and encrypted names never start with a dot,
// so the copy is coffer's.
func (c *checker) reencryptTemporary(rel string) {
	p := c.addAt(rel, "", KindTemporary, RepairRemove,
		"left by an interrupted coffer rotate --reencrypt (the original file is intact); running "+
			"it again removes it too; safe to remove while the volume is not mounted")
	if c.opts.Repair {
		if err := os.Remove(c.abs(rel)); err == nil {
			p.Repaired = true
		} else {
			p.Detail += fmt.Sprintf("; failed to remove it: %v", err)
		}
	}
}

// isSidecar reports whether backing is the sidecar name of a long name.
func isSidecar(backing string) bool {
	long, ok := strings.CutSuffix(backing, names.SidecarSuffix)
	return ok && names.IsLong(long)
}

// under says what else the mount loses with an entry of type typ.
func under(typ fs.FileMode) string {
	if typ.IsDir() {
		return ", nor anything under it"
	}
	return ""
}

// dirPath returns the path reported for directory rel: "." for the root.
func dirPath(rel, path string) string {
	if rel == "." {
		return "."
	}
	return path
}

// joinPlain joins a directory's path in the mount and a name in it.
func joinPlain(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}

// readLimited reads a regular file of at most limit bytes without
// following a symbolic link.
func readLimited(p string, limit int) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: filepath.Base(p), Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("not a regular file: %w", content.ErrCorrupt)
	}
	b := make([]byte, limit+1)
	n := 0
	for n < len(b) {
		m, err := unix.Read(fd, b[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	if n > limit {
		return nil, fmt.Errorf("larger than %d bytes: %w", limit, content.ErrCorrupt)
	}
	return b[:n], nil
}
