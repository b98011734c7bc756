package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"

	"github.com/cofferfs/coffer/keys"
)

// AnchorName is the head anchor's file name in the volume's .coffer folder.
const AnchorName = "audit-head.json"

const anchorVersion = 1

// Anchor remembers the head of a volume's audit chain outside the log:
// the seq and line hash of the last record written. A writer sets Pending to
// the record it is about to append, appends it, then moves it to Seq and
// Hash; a log that ends at either head is whole.
type Anchor struct {
	Version     int    `json:"version"`
	Seq         uint64 `json:"seq"`
	Hash        string `json:"hash"`
	PendingSeq  uint64 `json:"pending_seq,omitempty"`
	PendingHash string `json:"pending_hash,omitempty"`
}

// AnchorPath returns the path of the head anchor of the volume in backing.
func AnchorPath(backing string) string {
	return filepath.Join(backing, keys.DirName, AnchorName)
}

// ReadAnchor reads the head anchor of the volume in backing. It returns
// (nil, nil) when there is none.
func ReadAnchor(backing string) (*Anchor, error) {
	b, err := os.ReadFile(AnchorPath(backing))
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read audit head anchor: %w", err)
	}
	var a Anchor
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("failed to read audit head anchor %s: %w", AnchorPath(backing), err)
	}
	if a.Version != anchorVersion {
		return nil, fmt.Errorf("failed to read audit head anchor %s: unsupported version %d",
			AnchorPath(backing), a.Version)
	}
	return &a, nil
}

// matches reports whether a log whose last record has seq and hash ends
// at the anchored head, or at the pending one.
func (a *Anchor) matches(seq uint64, hash string) bool {
	return (seq == a.Seq && hash == a.Hash) ||
		(a.PendingSeq != 0 && seq == a.PendingSeq && hash == a.PendingHash)
}

// writeAnchor replaces the anchor of backing atomically and durably.
func writeAnchor(backing string, a Anchor) error {
	a.Version = anchorVersion
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("failed to encode audit head anchor: %w", err)
	}
	dir := filepath.Join(backing, keys.DirName)
	f, err := os.CreateTemp(dir, "."+AnchorName+".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to write audit head anchor: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, AnchorPath(backing))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("failed to write audit head anchor: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("failed to sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to sync %s: %w", dir, err)
	}
	return nil
}
