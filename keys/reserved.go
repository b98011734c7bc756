package keys

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
)

// reservedEntry is a fixed entry of a volume's .coffer folder.
type reservedEntry struct {
	name string
	dir  bool
}

// reservedEntries are the fixed entries of the .coffer folder. The audit
// and fs packages own some of them (audit.SettingsName, audit.AnchorName,
// content.UndoDir, fs.NamespaceLockName); their tests check that the names
// here agree.
var reservedEntries = []reservedEntry{
	{ConfigName, false}, {LockName, false}, {RotationLockName, false},
	{MountsName, true}, {UsageName, false}, {RotationName, false}, {ReencryptName, false},
	{"audit.json", false}, {"audit-head.json", false}, {"undo", true}, {"namespace.lock", false},
}

// ReservedNames returns the names of the fixed entries of .coffer, for the
// tests of the packages that own some of them.
func ReservedNames() []string {
	out := make([]string, len(reservedEntries))
	for i, e := range reservedEntries {
		out[i] = e.name
	}
	return out
}

// ReservedError reports an entry of the .coffer folder that is not what
// coffer makes there: a symbolic link (which coffer would follow out of the
// folder, possibly as root), or a folder, device or pipe where a file
// belongs.
type ReservedError struct {
	// Path is the entry's path (backing joined with its name).
	Path string
	// Is says what it is ("a symbolic link"), Want what it should be.
	Is, Want string
	// Config is set for volume.json, which must not simply be removed.
	Config bool
}

func (e *ReservedError) Error() string {
	return fmt.Sprintf("%s is %s, not %s: coffer does not follow links or use other kinds "+
		"of file in %s; %s", e.Path, e.Is, e.Want, DirName, e.Advice())
}

// Advice says what to do about the entry.
func (e *ReservedError) Advice() string {
	if e.Config {
		return "put the volume config itself in its place (or remove it and coffer restore a backup)"
	}
	return "remove it (coffer makes it again when needed)"
}

// CheckReserved checks, without following links, that backing's .coffer
// folder is a folder and each of its fixed entries that exists is of the
// kind coffer makes. Commands that write to the folder, and mounts, run it
// first, so that a link planted by someone who can write the backing
// directory never sends their writes elsewhere. A missing .coffer passes.
func CheckReserved(backing string) error {
	if p := reservedProblems(backing, false); len(p) > 0 {
		return p[0]
	}
	return nil
}

// ReservedProblems returns every entry of backing's .coffer folder that is
// not what coffer makes: the fixed entries as CheckReserved checks them,
// any other entry that is not a regular file, and entries of the undo and
// mounts folders that are not regular files.
func ReservedProblems(backing string) []*ReservedError {
	return reservedProblems(backing, true)
}

func reservedProblems(backing string, all bool) []*ReservedError {
	dir := filepath.Join(backing, DirName)
	fi, err := os.Lstat(dir)
	switch {
	case err != nil:
		return nil
	case !fi.IsDir():
		return []*ReservedError{{Path: dir, Is: FileKind(fi.Mode()), Want: "a directory"}}
	}
	var out []*ReservedError
	fixed := map[string]bool{}
	for _, e := range reservedEntries {
		fixed[e.name] = true
		p := filepath.Join(dir, e.name)
		err := checkReservedEntry(p, e.dir)
		if err == nil && all {
			err = checkLinks(p)
		}
		if err != nil {
			err.Config = e.name == ConfigName
			out = append(out, err)
		}
	}
	if !all {
		return out
	}
	out = append(out, otherEntries(dir, func(name string) bool { return fixed[name] })...)
	for _, sub := range []string{"undo", MountsName} {
		out = append(out, otherEntries(filepath.Join(dir, sub), nil)...)
	}
	return out
}

// checkReservedEntry checks entry p, if it exists, without following a link.
func checkReservedEntry(p string, dir bool) *ReservedError {
	fi, err := os.Lstat(p)
	if errors.Is(err, iofs.ErrNotExist) || err != nil {
		return nil
	}
	switch {
	case dir && !fi.IsDir():
		return &ReservedError{Path: p, Is: FileKind(fi.Mode()), Want: "a directory"}
	case !dir && !fi.Mode().IsRegular():
		return &ReservedError{Path: p, Is: FileKind(fi.Mode()), Want: "a regular file"}
	}
	return nil
}

// checkLinks reports file p, if it exists, when it has more than one name:
// a hard link to a file elsewhere, which coffer would overwrite if it
// wrote p in place (mounts make undo records afresh since breaker4 F3, so
// this is a trace of an attempt, or of a copy made with links).
func checkLinks(p string) *ReservedError {
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	if n := linkCount(fi); n > 1 {
		return &ReservedError{Path: p, Is: fmt.Sprintf("a file with %d hard links", n),
			Want: "a file with one name"}
	}
	return nil
}

// otherEntries returns the entries of folder dir, but those skip names,
// that are not regular files. A folder that is missing or not a folder
// (reported as a fixed entry) has none.
func otherEntries(dir string, skip func(string) bool) []*ReservedError {
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []*ReservedError
	for _, e := range entries {
		if skip != nil && skip(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		err := checkReservedEntry(p, false)
		if err == nil {
			err = checkLinks(p)
		}
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}
