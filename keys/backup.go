package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/rs/zerolog"
)

// BackupVersion is the version of the backup file this build writes and
// reads.
const BackupVersion = 1

// backupKind marks a backup file, so that restoring a volume.json or any
// other JSON by mistake is refused.
const backupKind = "coffer-volume-backup"

// Errors of Restore that callers act on.
var (
	// ErrVolumeMismatch reports a backup of another volume than the one in
	// the backing directory. There is no override.
	ErrVolumeMismatch = errors.New("backup belongs to another volume")
	// ErrRollback reports a backup older than the volume config it would
	// replace (a lower ring generation), or one that differs from it at the
	// same generation. Restoring it needs RestoreOptions.Force.
	ErrRollback = errors.New("backup is older than the volume config")
	// ErrNotComparable reports a current config that cannot be parsed, so
	// that nothing tells whether the backup is older. Restoring over it
	// needs RestoreOptions.Force.
	ErrNotComparable = errors.New("backup cannot be compared with the volume config")
)

// backupFile is the JSON form of a backup: the volume config, verbatim,
// with a header. The config holds only public data and sealed ring copies.
type backupFile struct {
	Version int             `json:"version"`
	Kind    string          `json:"kind"`
	Created time.Time       `json:"created"`
	Config  json.RawMessage `json:"config"`
}

// WriteBackup writes the config of backing, with its sealed ring copies, to
// a new file path (mode 0600; an existing file is never overwritten). It
// needs no key and holds none. On failure no file is left behind.
func WriteBackup(backing, path string) (*Config, error) {
	cfg, err := ReadConfig(backing)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to encode volume config: %w", err)
	}
	b, err := json.MarshalIndent(backupFile{Version: BackupVersion, Kind: backupKind,
		Created: now(), Config: raw}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode backup: %w", err)
	}
	if err := writeNewFile(path, append(b, '\n')); err != nil {
		return nil, fmt.Errorf("failed to write backup: %w", err)
	}
	return cfg, nil
}

// writeNewFile creates path with mode 0600, failing if it exists, writes b
// and syncs it and its folder. On failure it removes what it created.
func writeNewFile(path string, b []byte) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(path)
		}
	}()
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// ReadBackup reads and checks a backup file written by WriteBackup.
func ReadBackup(path string) (*Config, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("failed to open backup: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 2*maxConfigSize+1))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("failed to read backup %s: %w", path, err)
	}
	cfg, created, err := parseBackup(b)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("failed to read backup %s: %w", path, err)
	}
	return cfg, created, nil
}

func parseBackup(b []byte) (*Config, time.Time, error) {
	if len(b) > 2*maxConfigSize {
		return nil, time.Time{}, fmt.Errorf("%w: backup is too large", ErrMalformed)
	}
	var bf backupFile
	if err := decodeVersioned(b, &bf, BackupVersion, "backup"); err != nil {
		return nil, time.Time{}, err
	}
	if bf.Kind != backupKind {
		return nil, time.Time{}, fmt.Errorf("%w: not a coffer backup (kind %q)", ErrMalformed,
			bf.Kind)
	}
	cfg, err := parseConfig(bf.Config)
	if err != nil {
		return nil, time.Time{}, err
	}
	return cfg, bf.Created, nil
}

// RestoreOptions tunes Restore.
type RestoreOptions struct {
	// Force restores a backup older than the config it replaces, or over
	// a config that cannot be read and so cannot be compared.
	Force bool
	// Logger receives an Info event for the restore.
	Logger zerolog.Logger
}

// RestoreResult says what Restore replaced.
type RestoreResult struct {
	// Previous is the config that was replaced, nil if there was none or
	// it could not be read.
	Previous *Config
	// Unchanged is true when the volume config already equalled the
	// backup, so nothing was written.
	Unchanged bool
	// Damaged is where a config that could not be read was moved, or "".
	Damaged string
	// Replaced is where a copy of the valid config that was replaced was
	// kept (volume.json.replaced-UNIXTIME, mode 0600), or "".
	Replaced string
}

// Restore writes the config of backup into backing, recreating .coffer if
// it is gone. It refuses (with no override) a backup of another volume
// (ErrVolumeMismatch) and a config written by a newer coffer. Without
// opts.Force it refuses a backup whose ring generation is lower than the
// current config's, or equal but with other master keys or sealed copies
// (ErrRollback): restoring it would drop ring keys that newer files need,
// or bring back master keys removed since. It also refuses, without
// opts.Force, to replace a current config that cannot be parsed: nothing
// can be compared, and damaging the config is open to whoever can write
// the backing directory (ErrNotComparable). Forced, such a config is moved
// aside to volume.json.damaged-UNIXTIME, not deleted; a valid one is copied
// to volume.json.replaced-UNIXTIME first: it may hold the only copy of ring
// keys that newer files need.
func Restore(backing string, backup *Config, opts RestoreOptions) (RestoreResult, error) {
	if err := backup.Validate(); err != nil {
		return RestoreResult{}, fmt.Errorf("failed to restore: %w", err)
	}
	if err := checkBackingDir(backing); err != nil {
		return RestoreResult{}, err
	}
	// Checked before locking too, so that a refusal leaves no lock file.
	if res, err := checkRestore(backing, backup, opts.Force); err != nil || res.Unchanged {
		return res, err
	}
	dir := filepath.Join(backing, DirName)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, iofs.ErrExist) {
		return RestoreResult{}, fmt.Errorf("failed to create %s: %w", dir, err)
	}
	unlock, err := lockConfig(backing)
	if err != nil {
		return RestoreResult{}, err
	}
	defer unlock()

	res, err := checkRestore(backing, backup, opts.Force)
	if err != nil || res.Unchanged {
		return res, err
	}
	if res.Damaged != "" {
		if err := os.Rename(ConfigPath(backing), res.Damaged); err != nil {
			return RestoreResult{}, fmt.Errorf("failed to move damaged config aside: %w", err)
		}
	}
	if res.Previous != nil {
		if res.Replaced, err = keepReplaced(backing); err != nil {
			return RestoreResult{}, err
		}
	}
	if err := WriteConfig(backing, backup); err != nil {
		return RestoreResult{}, err
	}
	if err := syncDir(backing); err != nil {
		return RestoreResult{}, err
	}
	opts.Logger.Info().Str("backing", backing).Stringer("volume", backup.VolumeID).
		Uint64("generation", backup.Ring.Generation).Msg("volume config restored")
	return res, nil
}

// keepReplaced copies the current config of backing to a new file
// volume.json.replaced-UNIXTIME (mode 0600, synced) and returns its path.
func keepReplaced(backing string) (string, error) {
	b, err := os.ReadFile(ConfigPath(backing))
	if err != nil {
		return "", fmt.Errorf("failed to keep a copy of the replaced config: %w", err)
	}
	base := ConfigPath(backing) + ".replaced-" + strconv.FormatInt(time.Now().Unix(), 10)
	for i := 0; ; i++ {
		path := base
		if i > 0 {
			path += "." + strconv.Itoa(i)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, iofs.ErrExist) && i < 100 {
			continue // two restores within a second
		}
		if err != nil {
			return "", fmt.Errorf("failed to keep a copy of the replaced config: %w", err)
		}
		_, err = f.Write(b)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
			return "", fmt.Errorf("failed to keep a copy of the replaced config: %w", err)
		}
		return path, nil
	}
}

// checkRestore compares the current config of backing with backup.
func checkRestore(backing string, backup *Config, force bool) (RestoreResult, error) {
	cur, err := ReadConfig(backing)
	switch {
	case errors.Is(err, ErrNotInitialized):
		return RestoreResult{}, nil
	case errors.Is(err, ErrUnsupportedVersion):
		return RestoreResult{}, fmt.Errorf("failed to restore: the current config is newer "+
			"than this coffer: %w", err)
	case errors.Is(err, ErrMalformed):
		if id, ok := rawVolumeID(backing); ok && id != backup.VolumeID {
			return RestoreResult{}, fmt.Errorf("%w: the backup is of volume %s, the damaged "+
				"config names %s", ErrVolumeMismatch, backup.VolumeID, id)
		}
		if !force {
			// Nothing to compare the backup with, and whoever can write the
			// backing directory can damage the config on purpose, so that an
			// old backup brings back the master keys removed since.
			return RestoreResult{}, fmt.Errorf("%w: it cannot be read (the backup holds ring "+
				"generation %d%s): %w", ErrNotComparable, backup.Ring.Generation,
				mountsSeen(backing), err)
		}
		aside := ConfigPath(backing) + ".damaged-" + strconv.FormatInt(time.Now().Unix(), 10)
		return RestoreResult{Damaged: aside}, nil
	case err != nil:
		return RestoreResult{}, err
	}

	res := RestoreResult{Previous: cur}
	switch {
	case cur.VolumeID != backup.VolumeID:
		return res, fmt.Errorf("%w: the backup is of volume %s, %s holds volume %s",
			ErrVolumeMismatch, backup.VolumeID, backing, cur.VolumeID)
	case sameConfig(cur, backup):
		res.Unchanged = true
		return res, nil
	case cur.EncryptedNames() != backup.EncryptedNames() && !force:
		return res, fmt.Errorf("%w: the backup says names are %s, the volume's config %s; "+
			"the names mode never changes, so one of them was edited (the sealed ring "+
			"tells which: the other one does not unlock)", ErrConfigAltered,
			namesOf(backup), namesOf(cur))
	case force:
		return res, nil
	case cur.Ring.Generation > backup.Ring.Generation:
		return res, fmt.Errorf("%w: the backup holds ring generation %d, the volume is at %d; "+
			"files written since may need ring keys the backup lacks", ErrRollback,
			backup.Ring.Generation, cur.Ring.Generation)
	case cur.Ring.Generation == backup.Ring.Generation && !sameMasters(cur, backup):
		return res, fmt.Errorf("%w: the backup lists master keys %s, the volume %s; restoring "+
			"would bring back removed master keys or drop added ones", ErrRollback,
			masterIDs(backup), masterIDs(cur))
	}
	return res, nil
}

// mountsSeen says which ring generation the mount records of backing last
// used, as a clue for the admin, never as proof: they are as writable as
// the config.
func mountsSeen(backing string) string {
	acks, err := MountAcks(backing)
	if err != nil || len(acks) == 0 {
		return ""
	}
	var top uint64
	for _, a := range acks {
		top = max(top, a.Generation)
	}
	return fmt.Sprintf("; the mount records in %s name generation %d",
		filepath.Join(DirName, MountsName), top)
}

// sameConfig reports whether two configs encode alike.
func sameConfig(a, b *Config) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// sameMasters reports whether two configs have the same master keys with
// the same sealed copies.
func sameMasters(a, b *Config) bool {
	if len(a.Masters) != len(b.Masters) {
		return false
	}
	for _, m := range a.Masters {
		if !slices.ContainsFunc(b.Masters, func(o MasterEntry) bool { return o.ID == m.ID }) ||
			!bytes.Equal(a.Ring.Sealed[m.ID], b.Ring.Sealed[m.ID]) {
			return false
		}
	}
	return true
}

// rawVolumeID reads the volume ID of a config that does not validate.
func rawVolumeID(backing string) (VolumeID, bool) {
	b, err := os.ReadFile(ConfigPath(backing))
	if err != nil || len(b) > maxConfigSize {
		return VolumeID{}, false
	}
	var head struct {
		VolumeID VolumeID `json:"volume_id"`
	}
	if json.Unmarshal(b, &head) != nil || head.VolumeID == (VolumeID{}) {
		return VolumeID{}, false
	}
	return head.VolumeID, true
}

func namesOf(c *Config) string {
	if c.EncryptedNames() {
		return NamesEncrypted
	}
	return NamesPlaintext
}
