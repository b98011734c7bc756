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
// settings say, the head anchor in backing, and the syslog copy when
// enabled and opts.Syslog is nil. This is what commands call; they record
// events, call SetKeys once the ring is unlocked, and Close at the end.
//
// The settings are not authenticated, so a log they name is used only if
// it is one this user started for vol (see openConfigured) or is
// opts.Chosen; otherwise opts.NotUsed hears why, and the records go to the
// default log (its folder created with mode 0700), as they do when the
// settings name none.
func OpenVolume(backing string, vol keys.VolumeID, opts Options) (*Log, error) {
	s, err := ReadSettings(backing)
	if err != nil {
		return nil, err
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
	l, err := openVolumeLog(s, vol, opts)
	if err != nil && opts.ownsSyslog {
		_ = opts.Syslog.Close()
	}
	return l, err
}

// openVolumeLog opens the log that settings s name, or the default log.
func openVolumeLog(s Settings, vol keys.VolumeID, opts Options) (*Log, error) {
	switch {
	case s.Log != "" && s.Log == opts.Chosen:
		return Open(s.Log, vol, opts)
	case s.Log != "":
		f, err := openConfigured(s.Log, opts.Backing, vol, opts.Exclude)
		if err == nil {
			return newLog(f, s.Log, vol, opts), nil
		}
		if opts.NotUsed != nil {
			opts.NotUsed(s.Log, err)
		} else {
			opts.Logger.Warn().Err(err).Str("log", s.Log).
				Msg("configured audit log not used; writing to the default log")
		}
		// The head anchor follows the configured log: leave it alone.
		opts.Backing = ""
	}
	path, err := DefaultPath(vol)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("failed to create audit log folder: %w", err)
	}
	return Open(path, vol, opts)
}
