//go:build linux

package stress

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Kind is what an operation does.
type Kind uint8

// The operations of the exerciser. Off and Len are absolute, so that a log
// replays the same way on any file; the mapped kinds clamp them to the
// file's size at the time they run (a mapping cannot grow a file).
const (
	Write     Kind = iota // pwrite Len bytes at Off, possibly past the end
	Append                // write Len bytes through the O_APPEND descriptor
	Truncate              // set the size to Off; Arg 1: truncate(2) by path
	Allocate              // fallocate mode 0 over [Off, Off+Len)
	Read                  // pread Len bytes at Off through a read-only descriptor
	MmapRead              // read [Off, Off+Len) through a shared mapping
	MmapWrite             // write [Off, Off+Len) through a shared mapping; Arg 1: msync
	Fsync                 // fsync the read-write descriptor; Arg 1: fdatasync
	Reopen                // close every descriptor of the file and open it again
	Rename                // rename to a new name; Arg 1: over an existing file
	numKinds
)

var kindNames = [numKinds]string{
	Write: "write", Append: "append", Truncate: "truncate", Allocate: "allocate",
	Read: "read", MmapRead: "mmap-read", MmapWrite: "mmap-write", Fsync: "fsync",
	Reopen: "reopen", Rename: "rename",
}

// String returns the name of the kind as logs show it.
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// parseKind is the inverse of Kind.String.
func parseKind(s string) (Kind, error) {
	for k, name := range kindNames {
		if name == s {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("unknown operation %q", s)
}

// Op is one operation on one of a worker's files.
type Op struct {
	Kind Kind
	File int    // index of the file among the worker's files
	Off  int64  // offset, or the new size for Truncate
	Len  int64  // byte count
	Seed uint64 // seed of the written bytes; unique per op, it also names renames
	Arg  int    // variant, see the kinds
}

// String formats the op as one line of an operation log; ParseOp reads it
// back.
func (o Op) String() string {
	return fmt.Sprintf("%s f=%d off=%d len=%d seed=%d arg=%d", o.Kind, o.File, o.Off, o.Len, o.Seed, o.Arg)
}

// ParseOp parses a line written by Op.String.
func ParseOp(line string) (Op, error) {
	var o Op
	var kind string
	_, err := fmt.Sscanf(strings.TrimSpace(line), "%s f=%d off=%d len=%d seed=%d arg=%d",
		&kind, &o.File, &o.Off, &o.Len, &o.Seed, &o.Arg)
	if err != nil {
		return Op{}, fmt.Errorf("failed to parse operation %q: %w", line, err)
	}
	if o.Kind, err = parseKind(kind); err != nil {
		return Op{}, err
	}
	if o.File < 0 || o.Off < 0 || o.Len < 0 {
		return Op{}, fmt.Errorf("failed to parse operation %q: negative field", line)
	}
	return o, nil
}

// writes reports whether the op carries data.
func (o Op) writes() bool {
	return o.Kind == Write || o.Kind == Append || o.Kind == MmapWrite
}

// data returns the bytes the op writes: Len pseudo-random bytes from Seed.
func (o Op) data() []byte {
	if !o.writes() {
		return nil
	}
	var key [32]byte
	for i := range 8 {
		key[i] = byte(o.Seed >> (8 * i))
	}
	b := make([]byte, o.Len)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}
