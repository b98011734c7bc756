package keys

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"time"
)

// UsageName is the file in DirName that records when each master key last
// unlocked the volume. It is advisory: kept apart from volume.json so that
// a mount never rewrites the config, left out of backups, and ignored when
// missing or unreadable.
const UsageName = "usage.json"

const (
	usageVersion = 1
	maxUsageSize = 64 << 10
)

// usageFile is the JSON form of UsageName.
type usageFile struct {
	Version  int                  `json:"version"`
	LastUsed map[string]time.Time `json:"last_used"`
}

// RecordUse notes in the usage file of backing that master key id unlocked
// the volume at t. Entries of master keys no longer in the config are
// dropped. It takes the config lock, so it never races a config change.
func RecordUse(backing, id string, t time.Time) error {
	unlock, err := lockConfig(backing)
	if err != nil {
		return err
	}
	defer unlock()

	cfg, err := ReadConfig(backing)
	if err != nil {
		return err
	}
	used, _ := LastUsed(backing) // a damaged usage file is rewritten
	u := usageFile{Version: usageVersion, LastUsed: map[string]time.Time{}}
	for _, m := range cfg.Masters {
		if at, ok := used[m.ID]; ok {
			u.LastUsed[m.ID] = at
		}
	}
	if _, ok := cfg.Master(id); ok {
		u.LastUsed[id] = t.UTC().Truncate(time.Second)
	}

	b, err := json.MarshalIndent(u, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode usage file: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(backing, DirName), UsageName, append(b, '\n')); err != nil {
		return fmt.Errorf("failed to write usage file: %w", err)
	}
	return nil
}

// LastUsed returns when each master key of backing last unlocked it, as
// far as the usage file knows; an empty map when it has no usage file.
func LastUsed(backing string) (map[string]time.Time, error) {
	f, err := os.Open(filepath.Join(backing, DirName, UsageName))
	if errors.Is(err, iofs.ErrNotExist) {
		return map[string]time.Time{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to open usage file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxUsageSize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read usage file: %w", err)
	}
	if len(b) > maxUsageSize {
		return nil, fmt.Errorf("%w: usage file is larger than %d bytes", ErrMalformed, maxUsageSize)
	}
	var u usageFile
	if err := decodeVersioned(b, &u, usageVersion, "usage file"); err != nil {
		return nil, err
	}
	if u.LastUsed == nil {
		u.LastUsed = map[string]time.Time{}
	}
	return u.LastUsed, nil
}
