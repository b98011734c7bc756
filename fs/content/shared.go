package content

import (
	"encoding/hex"
	"strings"
)

// Shared-storage mounts. Several coffer processes may serve one backing
// directory at once (coffer mount --shared); they coordinate through byte
// range locks on the backing files and keep one undo record each per file.
// docs/format.md ("Shared mounts") specifies both.

// LockBase is where the range locks that coordinate processes start: the
// lock for backing bytes [a, b) of a file covers [LockBase+a, LockBase+b).
// Applications' POSIX locks, forwarded to the backing file, are confined
// below LockBase, so the two never meet.
const LockBase = 1 << 62

// FileIDOffset is where the file ID lies in a header.
const FileIDOffset = 8

// UndoTagName returns the file name of the undo record that the mount
// tagged tag keeps for the file id: the ID in lowercase hex, a dot and the
// tag. A tag is made of letters, digits, '-' and '_'.
func UndoTagName(id FileID, tag string) string {
	return hex.EncodeToString(id[:]) + "." + tag
}

// UndoFileName returns the name (as UndoName gives it) of the file whose
// undo record is called name, with or without a mount tag.
func UndoFileName(name string) string {
	id, _, _ := strings.Cut(name, ".")
	return id
}
