package keys

import (
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"time"
)

// ReencryptName is the file in DirName that records a re-encryption
// (coffer rotate --reencrypt) in progress.
const ReencryptName = "reencrypt.json"

const reencryptVersion = 1

// Reencrypt is the state of a re-encryption in progress. Files are done
// when their header is a new one on Target; Token names the temporary
// files of the run, which a resumed run removes.
type Reencrypt struct {
	Version int    `json:"version"`
	Target  uint32 `json:"target"` // the ring key of the new data keys
	Token   string `json:"token"`  // hex, in the temporary files' names
	// Generation is the ring generation when the re-encryption started.
	Generation uint64    `json:"generation"`
	Started    time.Time `json:"started"`
}

// ReadReencrypt returns the re-encryption in progress in backing, or nil
// when there is none.
func ReadReencrypt(backing string) (*Reencrypt, error) {
	b, err := os.ReadFile(filepath.Join(backing, DirName, ReencryptName))
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read re-encryption state: %w", err)
	}
	if len(b) > maxRotationSize {
		return nil, fmt.Errorf("%w: re-encryption state is larger than %d bytes", ErrMalformed,
			maxRotationSize)
	}
	var r Reencrypt
	if err := decodeVersioned(b, &r, reencryptVersion, "re-encryption state"); err != nil {
		return nil, err
	}
	if r.Target == 0 || !isLowerHex(r.Token, 16) {
		return nil, fmt.Errorf("%w: re-encryption state has no target key or token", ErrMalformed)
	}
	return &r, nil
}

// WriteReencrypt records r as the re-encryption in progress, atomically
// and durably.
func WriteReencrypt(backing string, r Reencrypt) error {
	r.Version = reencryptVersion
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode re-encryption state: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(backing, DirName), ReencryptName,
		append(b, '\n')); err != nil {
		return fmt.Errorf("failed to write re-encryption state: %w", err)
	}
	return nil
}

// ClearReencrypt removes the re-encryption state of backing, durably.
func ClearReencrypt(backing string) error {
	dir := filepath.Join(backing, DirName)
	err := os.Remove(filepath.Join(dir, ReencryptName))
	if err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("failed to remove re-encryption state: %w", err)
	}
	return syncDir(dir)
}
