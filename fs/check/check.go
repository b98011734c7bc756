//go:build linux

// Package check verifies the backing directory of a coffer volume offline:
// every file's size, header, key slots and blocks, against the volume's key
// ring, and names each damaged file and block. With repair it restores
// blocks that a crash cut in the middle of an overwrite from their undo
// records and cuts damaged last blocks off; it never changes a byte that
// authenticates. "coffer fsck" is its command line.
//
// The volume must not be mounted while Run repairs: the mount caches
// headers and writes blocks. The caller holds the volume's lock.
package check

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	cofferfs "github.com/cofferfs/coffer/fs"
	"github.com/cofferfs/coffer/fs/content"
	"github.com/cofferfs/coffer/fs/deeppath"
	"github.com/cofferfs/coffer/keys"
)

// Options configures a check.
type Options struct {
	// VolumeID is the volume's ID, bound into every key slot.
	VolumeID [16]byte
	// Keys unwraps the files' data keys. Required.
	Keys cofferfs.KeyWrapper
	// EncryptedNames says that the volume encrypts names: the check also
	// covers every directory's record, every entry name, every long name's
	// sidecar and temporary names left by a crash, and problems name the
	// decrypted path too.
	EncryptedNames bool
	// Repair restores and cuts what can be repaired (see Problem.Repair)
	// and prunes undo records of files that no longer exist.
	Repair bool
	// Progress, if set, is called before each file is checked with the
	// number of files checked so far and the file's backing path.
	Progress func(files int, backing string)
}

// Kinds of problems.
const (
	KindSize     = "size"      // a backing size no file can have
	KindHeader   = "header"    // the header does not parse or no key slot unwraps
	KindSlot     = "slot"      // the current key slot fails, the other one works: not damage
	KindBlock    = "block"     // a block fails authentication
	KindTornTail = "torn-tail" // the last block was cut before its first plaintext byte
	KindIO       = "io"        // the file could not be read

	// With encrypted names:
	KindRecord    = "directory-record" // a directory's record is missing, damaged or not its own
	KindName      = "name"             // an entry name does not decrypt under its directory's key
	KindSidecar   = "sidecar"          // a long name's sidecar is missing or damaged, or has no long name
	KindTemporary = "temporary"        // a temporary name left by a crash

	// KindReserved is an entry of the .coffer folder that is a symbolic
	// link, or of another kind than coffer makes there.
	KindReserved = "reserved"
)

// Repairs, what --repair does (or did) about a problem.
const (
	// RepairRestore writes back the block's pre-image from the undo
	// record: an overwrite was cut by a crash. The mount reads such a
	// block as its pre-image (and writes it back) by itself.
	RepairRestore = "restore"
	// RepairRollback undoes a write cut by a crash while it grew the last
	// block: the old last block comes back from the undo record and the
	// file is cut to its size before that write.
	RepairRollback = "rollback"
	// RepairTruncate cuts the file before its damaged last block, whose
	// content is lost.
	RepairTruncate = "truncate"
	// RepairRemove removes what a crash left and holds no data: the
	// sidecar of a long name that is gone, a temporary name.
	RepairRemove = "remove"
	// RepairNone means the data is lost, or cannot be reached through the
	// mount: restore the file, record or sidecar from a backup.
	RepairNone = "none"
)

// Problem is one damaged file, block, directory or name.
type Problem struct {
	// Backing is the backing file or directory, relative to the backing
	// directory ("." for the root).
	Backing string `json:"backing"`
	// Path is its path in the mount, relative to its root ("." for the
	// root); empty if a name on the way does not decrypt.
	Path string `json:"path"`
	// Block is the block number, or -1 for the file as a whole.
	Block int64 `json:"block"`
	// LastBlock is the last block of a run of consecutive blocks with the
	// same problem, reported as one (from Block to LastBlock, both
	// included); 0 and left out for a single block or the whole file.
	LastBlock int64  `json:"last_block,omitempty"`
	Kind      string `json:"kind"`
	Detail    string `json:"detail"`
	// Repair says what Options.Repair does about it: RepairRestore,
	// RepairRollback, RepairTruncate, RepairRemove or RepairNone.
	Repair string `json:"repair"`
	// Repaired is set once the repair was made.
	Repaired bool `json:"repaired"`
}

// Report is the outcome of a check.
type Report struct {
	Files    int       `json:"files"`
	Blocks   int64     `json:"blocks"`
	Problems []Problem `json:"problems"`
	// StaleUndo lists undo records of files that no longer exist, by path
	// relative to the backing directory. They are harmless; Repair
	// removes them.
	StaleUndo []string `json:"stale_undo"`
	Pruned    bool     `json:"pruned"`
}

// Left reports whether the problem is damage that is left: not repaired,
// and not a failed key slot next to a working one, which loses nothing
// (the next key rotation rewrites it).
func (p Problem) Left() bool {
	return !p.Repaired && p.Kind != KindSlot
}

// Damaged reports whether damage is left.
func (r *Report) Damaged() bool {
	for _, p := range r.Problems {
		if p.Left() {
			return true
		}
	}
	return false
}

// Run checks every regular file under backing, except the volume's
// reserved folder, and with encrypted names every directory record, entry
// name and long-name sidecar too.
func Run(backing string, opts Options) (*Report, error) {
	if opts.Keys == nil {
		return nil, errors.New("failed to check volume: no key wrapper")
	}
	c := &checker{backing: backing, opts: opts,
		report: &Report{Problems: []Problem{}, StaleUndo: []string{}}, ids: map[string]bool{}}
	if st, err := os.Stat(backing); err != nil || !st.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return nil, fmt.Errorf("failed to check volume: backing directory %s: %w", backing, err)
	}
	c.paths = deeppath.NewResolver(backing)
	defer c.paths.Close()
	var err error
	if opts.EncryptedNames {
		err = c.walkNames()
	} else {
		err = c.walkPlain()
	}
	if err != nil {
		return nil, err
	}
	if err := c.staleUndo(); err != nil {
		return nil, err
	}
	c.reserved()
	return c.report, nil
}

// walkPlain checks every regular file of a volume with plaintext names.
func (c *checker) walkPlain() error {
	err := deeppath.Walk(c.backing, func(e deeppath.Entry) error {
		rel := e.Rel
		if rel == cofferfs.ReservedName {
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() {
			return nil
		}
		if c.opts.Progress != nil {
			c.opts.Progress(c.report.Files, rel)
		}
		c.report.Files++
		return c.file(rel)
	})
	if err != nil {
		return fmt.Errorf("failed to walk backing directory: %w", err)
	}
	return nil
}

// checker is the state of one Run.
type checker struct {
	backing string
	opts    Options
	report  *Report
	ids     map[string]bool // undo record names of the files seen
	paths   *deeppath.Resolver

	// cur is the backing file being checked with encrypted names, and
	// curPath its path in the mount ("" if unknown).
	cur, curPath string
}

// abs returns a path that reaches backing entry rel, however deep it lies,
// until the next call of abs.
func (c *checker) abs(rel string) string {
	return c.paths.Path(rel)
}

// add records a problem of file rel. A block problem that nothing repairs,
// right after the same problem of the block before, extends that problem
// to a run of blocks, so that a large damaged or sparse file makes one
// problem, not one per block.
func (c *checker) add(rel string, block int64, kind, repair, format string, args ...any) *Problem {
	detail := fmt.Sprintf(format, args...)
	if n := len(c.report.Problems); n > 0 && block > 0 && repair == RepairNone {
		last := &c.report.Problems[n-1]
		end := max(last.Block, last.LastBlock)
		if last.Backing == rel && last.Kind == kind && last.Repair == repair &&
			last.Detail == detail && last.Block >= 0 && end == block-1 {
			last.LastBlock = block
			return last
		}
	}
	c.report.Problems = append(c.report.Problems, Problem{Backing: rel, Path: c.plainPath(rel),
		Block: block, Kind: kind, Detail: detail, Repair: repair})
	return &c.report.Problems[len(c.report.Problems)-1]
}

// addRun records the same problem of blocks first to last of file rel.
func (c *checker) addRun(rel string, first, last int64, kind, detail string) {
	p := c.add(rel, first, kind, RepairNone, "%s", detail)
	if last > first {
		p.LastBlock = last
	}
}

// addAt records a problem of the whole of backing entry rel, whose path in
// the mount is path.
func (c *checker) addAt(rel, path, kind, repair, format string, args ...any) *Problem {
	c.report.Problems = append(c.report.Problems, Problem{Backing: rel, Path: path,
		Block: -1, Kind: kind, Detail: fmt.Sprintf(format, args...), Repair: repair})
	return &c.report.Problems[len(c.report.Problems)-1]
}

// plainPath returns the path in the mount of backing file rel, or "" if
// it is not known.
func (c *checker) plainPath(rel string) string {
	if !c.opts.EncryptedNames {
		return rel
	}
	if rel == c.cur {
		return c.curPath
	}
	return ""
}

// file checks one backing file.
func (c *checker) file(rel string) error {
	flags := unix.O_RDONLY
	if c.opts.Repair {
		flags = unix.O_RDWR
	}
	fd, err := unix.Open(c.abs(rel), flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		// Removed since it was listed: a check next to a running mount
		// sees that; there is nothing left to check.
		return nil
	}
	if err != nil {
		c.add(rel, -1, KindIO, RepairNone, "failed to open: %v", err)
		return nil
	}
	defer unix.Close(fd)
	// Shared mounts change the file only under their range locks: a read
	// lock on all of it makes the check see the file between two writes
	// (closing fd drops it). The lock is only advisory; a failure to
	// take it checks the file all the same.
	whole := unix.Flock_t{Type: unix.F_RDLCK, Start: content.LockBase}
	if c.opts.Repair {
		whole.Type = unix.F_WRLCK
	}
	for unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLKW, &whole) == unix.EINTR {
	}
	f := &file{checker: c, rel: rel, fd: fd}
	if err := f.check(); err != nil {
		c.add(rel, -1, KindIO, RepairNone, "%v", err)
	}
	return nil
}

// staleUndo lists, and with Repair removes, the undo records of files
// that were not found. It never follows a link: .coffer or .coffer/undo
// replaced by one is reported by reserved, and its entries are not ours.
func (c *checker) staleUndo() error {
	dfd, err := openNoFollowDir(c.backing, cofferfs.ReservedName, content.UndoDir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to list undo records: %w", err)
	}
	d := os.NewFile(uintptr(dfd), "undo")
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("failed to list undo records: %w", err)
	}
	for _, e := range entries {
		if c.ids[content.UndoFileName(e.Name())] || !e.Type().IsRegular() {
			continue // a non-regular entry is reported by reserved
		}
		c.report.StaleUndo = append(c.report.StaleUndo,
			filepath.Join(cofferfs.ReservedName, content.UndoDir, e.Name()))
		if c.opts.Repair {
			if err := unix.Unlinkat(dfd, e.Name(), 0); err != nil {
				return fmt.Errorf("failed to remove stale undo record: %w", err)
			}
		}
	}
	c.report.Pruned = c.opts.Repair && len(c.report.StaleUndo) > 0
	slices.Sort(c.report.StaleUndo)
	return nil
}

// openNoFollowDir opens the folder base/names..., following no link after
// base.
func openNoFollowDir(base string, names ...string) (int, error) {
	fd, err := unix.Open(base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, name := range names {
		next, err := unix.Openat(fd, name,
			unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		fd = next
	}
	return fd, nil
}

// reserved reports the entries of the .coffer folder that are symbolic
// links or of another kind than coffer makes there (a link planted as an
// undo record made every overwrite of its file fail, unreported).
func (c *checker) reserved() {
	for _, p := range keys.ReservedProblems(c.backing) {
		rel, err := filepath.Rel(c.backing, p.Path)
		if err != nil {
			rel = p.Path
		}
		c.addAt(rel, "", KindReserved, RepairNone, "%s, not %s: %s", p.Is, p.Want, p.Advice())
	}
}
