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

// SettingsName is the file in the volume's .coffer folder that holds the
// volume's audit settings. It is public and holds no secret.
const SettingsName = "audit.json"

const settingsVersion = 1

// Settings are a volume's audit settings.
type Settings struct {
	Version int `json:"version"`
	// Log is the absolute path of the audit log; empty means DefaultPath.
	Log string `json:"log,omitempty"`
	// Syslog copies every record to the local syslog daemon.
	Syslog bool `json:"syslog,omitempty"`
}

// SettingsPath returns the path of the audit settings of the volume in
// backing.
func SettingsPath(backing string) string {
	return filepath.Join(backing, keys.DirName, SettingsName)
}

// ReadSettings reads the audit settings of the volume in backing; a volume
// without them has the zero Settings (default log, no syslog).
func ReadSettings(backing string) (Settings, error) {
	b, err := os.ReadFile(SettingsPath(backing))
	if errors.Is(err, iofs.ErrNotExist) {
		return Settings{Version: settingsVersion}, nil
	}
	if err != nil {
		return Settings{}, fmt.Errorf("failed to read audit settings: %w", err)
	}
	var s Settings
	if err := json.Unmarshal(b, &s); err != nil {
		return Settings{}, fmt.Errorf("failed to read audit settings %s: %w",
			SettingsPath(backing), err)
	}
	if s.Version != settingsVersion {
		return Settings{}, fmt.Errorf("failed to read audit settings %s: unsupported version %d",
			SettingsPath(backing), s.Version)
	}
	if s.Log != "" && !filepath.IsAbs(s.Log) {
		return Settings{}, fmt.Errorf("failed to read audit settings %s: log path %q is "+
			"not absolute", SettingsPath(backing), s.Log)
	}
	return s, nil
}

// WriteSettings replaces the audit settings of the volume in backing
// atomically. The .coffer folder must exist.
func WriteSettings(backing string, s Settings) error {
	s.Version = settingsVersion
	if s.Log != "" && !filepath.IsAbs(s.Log) {
		return fmt.Errorf("failed to write audit settings: log path %q is not absolute", s.Log)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode audit settings: %w", err)
	}
	dir := filepath.Join(backing, keys.DirName)
	f, err := os.CreateTemp(dir, "."+SettingsName+".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to write audit settings: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), SettingsPath(backing))
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("failed to write audit settings: %w", err)
	}
	return syncDir(dir)
}

// DirEnv names an environment variable that, when it holds an absolute
// path, replaces the default folder of audit logs (for tests and packagers).
const DirEnv = "COFFER_AUDIT_DIR"

// DefaultPath returns where the audit log of volume vol lives when its
// settings name none: /var/log/coffer/VOLUME-ID.audit.jsonl for root, else
// VOLUME-ID.audit.jsonl in $XDG_STATE_HOME/coffer or
// ~/.local/state/coffer; $COFFER_AUDIT_DIR/VOLUME-ID.audit.jsonl when that
// is set. It is beside the mount's own log, never in the backing directory.
func DefaultPath(vol keys.VolumeID) (string, error) {
	name := vol.String() + ".audit.jsonl"
	if d := os.Getenv(DirEnv); filepath.IsAbs(d) {
		return filepath.Join(d, name), nil
	}
	if os.Geteuid() == 0 {
		return filepath.Join("/var/log/coffer", name), nil
	}
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "coffer", name), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("failed to choose the audit log path: %w", err)
	}
	return filepath.Join(home, ".local", "state", "coffer", name), nil
}

// Path returns the audit log path of volume vol under these settings.
func (s Settings) Path(vol keys.VolumeID) (string, error) {
	if s.Log != "" {
		return s.Log, nil
	}
	return DefaultPath(vol)
}
