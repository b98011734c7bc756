package audit

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cofferfs/coffer/keys"
)

// SyslogTag is the tag of the records copied to syslog.
const SyslogTag = "coffer-audit"

// OpenVolume opens the audit log of the volume vol in backing as its
// settings say: the configured or default path (creating the default
// folder, mode 0700), the head anchor in backing, and the syslog copy when
// enabled and opts.Syslog is nil. This is what commands call; they record
// events, call SetKeys once the ring is unlocked, and Close at the end.
func OpenVolume(backing string, vol keys.VolumeID, opts Options) (*Log, error) {
	s, err := ReadSettings(backing)
	if err != nil {
		return nil, err
	}
	path, err := s.Path(vol)
	if err != nil {
		return nil, err
	}
	if s.Log == "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("failed to create audit log folder: %w", err)
		}
	}
	opts.Backing = backing
	if s.Syslog && opts.Syslog == nil {
		w, err := localSyslog()
		if err != nil {
			opts.Logger.Warn().Err(err).Msg("failed to connect to syslog; audit records go " +
				"to the log file only")
		} else {
			opts.Syslog, opts.ownsSyslog = w, true
		}
	}
	return Open(path, vol, opts)
}
