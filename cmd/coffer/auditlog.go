package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/recovery"
)

// openAudit opens the audit log of volume vol in backing, as the volume's
// audit settings say. Commands that use a key record their events in it:
// SetKeys once the ring is unlocked, recordAudit per event, Close at the
// end (which writes the closing checkpoint). A configured log is not used
// inside the volume's mounts or the folders in exclude (a mount point about
// to be mounted), nor when it is not a log this user started for the
// volume: the command then warns and writes to the default log.
func openAudit(a *app, backing string, vol keys.VolumeID, exclude ...string) (*audit.Log, error) {
	return openAuditOpts(a, backing, vol, audit.Options{Exclude: exclude})
}

// openAuditOpts is openAudit with opts, whose Logger, AnchorMismatch and
// NotUsed it sets.
func openAuditOpts(a *app, backing string, vol keys.VolumeID, opts audit.Options) (*audit.Log,
	error) {
	var once sync.Once
	mismatch := func(path string, logSeq, anchorSeq uint64) {
		once.Do(func() { warnAnchorMismatch(a, backing, path, logSeq, anchorSeq) })
	}
	opts.Logger, opts.AnchorMismatch = a.log, mismatch
	opts.Exclude = volumeMounts(backing, opts.Exclude...)
	opts.NotUsed = func(path string, why error) { warnLogNotUsed(a, backing, path, why) }
	l, err := audit.OpenVolume(backing, vol, opts)
	if err == nil {
		// Opening works on any file; appending checks whose log it is.
		// Checked now, so that no key is used without its record.
		if err = audit.CheckLog(l.Path(), vol); err != nil {
			_ = l.Close()
		}
	}
	if err != nil {
		return nil, withHints(fmt.Errorf("failed to open the audit log: %w", err),
			"make its folder writable, or choose another log: coffer audit config "+
				shellQuote(backing)+" --log FILE")
	}
	return l, nil
}

// warnAnchorMismatch says, in one line, that the audit log at path ends at
// record logSeq while the volume's head anchor names anchorSeq, and what
// may have caused it.
func warnAnchorMismatch(a *app, backing, path string, logSeq, anchorSeq uint64) {
	p, b := printable(path), printable(backing)
	if logSeq > anchorSeq {
		// The log went on past the anchor: most often an anchor that
		// could not be written, which that command warned about.
		fmt.Fprintf(a.stderr, "coffer: warning: audit log %s runs to record %d, past record %d "+
			"that this volume's head anchor names: an earlier command could not update the "+
			"anchor (it warned \"failed to update audit head anchor\": a full or read-only "+
			"backing directory), or %s is a copy of another backing directory sharing the log "+
			"(give it its own log: coffer audit config %s --log FILE); check with coffer audit "+
			"verify %s --backing %s, then remove %s to accept the log\n", p, logSeq, anchorSeq, b,
			shellQuote(backing), shellQuote(path), shellQuote(backing),
			shellQuote(audit.AnchorPath(backing)))
		return
	}
	fmt.Fprintf(a.stderr, "coffer: warning: audit log %s ends at record %d, but this volume's "+
		"head anchor says %d: records were cut off or the log was replaced, or %s is a copy of "+
		"another backing directory (give it its own log: coffer audit config %s --log FILE); "+
		"run coffer audit verify %s --backing %s\n", p, logSeq, anchorSeq, b, shellQuote(backing),
		shellQuote(path), shellQuote(backing))
}

// recordAudit writes e to l. A failure is logged, not returned: the key
// event already happened, and the command's own result matters more than
// the record. Callers that must not act without a record check first that
// the log opens (openAudit).
func recordAudit(ctx context.Context, a *app, l *audit.Log, e audit.Event) {
	if l == nil {
		return
	}
	if err := l.Record(ctx, e); err != nil {
		a.log.Error().Err(err).Str("event", string(e.Type)).Str("audit_log", l.Path()).
			Msg("failed to write audit record")
	}
}

// closeAudit closes l, logging a failure to write the closing checkpoint.
func closeAudit(a *app, l *audit.Log) {
	if l == nil {
		return
	}
	if err := l.Close(); err != nil {
		a.log.Error().Err(err).Str("audit_log", l.Path()).Msg("failed to close the audit log")
	}
}

// unlockFailures returns a keys.UnlockOptions.Failed function that records
// each master key that failed to unlock the volume.
func unlockFailures(ctx context.Context, a *app, l *audit.Log) func(keys.MasterEntry, error) {
	return func(m keys.MasterEntry, err error) {
		recordAudit(ctx, a, l, audit.Event{Type: audit.EventUnlock, Master: m.ID, Err: err,
			Detail: map[string]string{"kind": m.Kind}})
	}
}

// mastersDetail lists the master keys of cfg as "ID (kind)", for records.
func mastersDetail(cfg *keys.Config) string {
	parts := make([]string, len(cfg.Masters))
	for i, m := range cfg.Masters {
		parts[i] = m.ID + " (" + m.Kind + ")"
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// auditLogFlag resolves an --audit-log or --log value to an absolute path
// whose folder exists, and refuses one inside the backing directory, where
// it would sit beside the data it audits.
func auditLogFlag(flag, path, backing string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("failed to resolve %s %s: %w", flag, path, err)
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if errors.Is(err, os.ErrNotExist) {
		return "", withHints(fmt.Errorf("folder of %s %s does not exist", flag, path),
			"create it first, or choose another file")
	}
	if err != nil {
		return "", fmt.Errorf("failed to resolve %s %s: %w", flag, path, err)
	}
	abs = filepath.Join(dir, filepath.Base(abs))
	if b, err := filepath.EvalSymlinks(backing); err == nil && within(abs, b) {
		return "", withHints(usageErrorf("%s %s is inside the backing directory", flag, path),
			"keep the audit log apart from the data it audits, on another disk or host if you can")
	}
	// In a mount of the volume itself, the log would exist only while the
	// volume is mounted, and a mount cannot write its log through itself.
	for _, mp := range volumeMounts(backing) {
		if in, err := pathWithin(mp, abs); err == nil && in {
			return "", withHints(usageErrorf("%s %s is inside %s, a mount of this volume", flag, path, mp),
				"keep the audit log outside the volume's mounts, on another disk or host if you can")
		}
	}
	if err := checkNotSpecial(flag, abs); err != nil {
		return "", err
	}
	return abs, nil
}

// within reports whether path is dir or lies under it.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// checkAuditWritable checks, before a volume is created, that its audit log
// will open: the file if it exists, else its folder (created if it is the
// default one).
func checkAuditWritable(path string, isDefault bool) error {
	if isDefault {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return withHints(fmt.Errorf("failed to create the audit log folder: %w", err),
				"pass --audit-log FILE to keep the audit log elsewhere")
		}
	}
	if err := checkNotSpecial("audit log", path); err != nil {
		return err
	}
	if _, err := os.Stat(path); err == nil {
		// Not blocking: a named pipe put there since the check above
		// fails the regular-file check of the audit log's open instead.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|syscall.O_NONBLOCK, 0)
		if err != nil {
			return withHints(fmt.Errorf("audit log %s is not writable: %w", path, err),
				"pass --audit-log FILE to keep the audit log elsewhere")
		}
		return f.Close()
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".coffer-audit-check-*")
	if err != nil {
		return withHints(fmt.Errorf("audit log %s cannot be created: %w", path, err),
			"pass --audit-log FILE to keep the audit log elsewhere")
	}
	f.Close()
	_ = os.Remove(f.Name())
	return nil
}

// recordRecoveryUse records that a recovery key unlocked the volume, when
// used is a recovery master.
func recordRecoveryUse(ctx context.Context, a *app, l *audit.Log, used keys.MasterEntry) {
	if used.Kind == recovery.Kind {
		recordAudit(ctx, a, l, audit.Event{Type: audit.EventRecoveryUsed, Master: used.ID})
	}
}

// absPath returns path made absolute, or path itself when that fails.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// auditLogPath returns the audit log that commands on the volume vol in
// backing write to (see openAudit), warning when the configured one is not
// used.
func auditLogPath(a *app, backing string, vol keys.VolumeID, exclude ...string) (string, error) {
	path, notUsed, err := audit.Where(backing, vol, volumeMounts(backing, exclude...))
	if err != nil {
		return "", err
	}
	if notUsed != nil {
		s, _ := audit.ReadSettings(backing)
		warnLogNotUsed(a, backing, s.Log, notUsed)
	}
	return path, nil
}

// warnLogNotUsed says, in one line, that the configured audit log at path
// is not used and why.
func warnLogNotUsed(a *app, backing, path string, why error) {
	reason := strings.TrimPrefix(why.Error(), audit.ErrLogNotUsed.Error()+": ")
	fmt.Fprintf(a.stderr, "coffer: warning: not using the audit log %s named in %s: %s; "+
		"writing to the default log instead (if you set that log up, start it again with "+
		"coffer audit config %s --log FILE)\n", printable(path),
		printable(audit.SettingsPath(backing)), printable(reason), shellQuote(backing))
}

// resolveLogPath returns path with symbolic links in its folder resolved.
func resolveLogPath(path string) string {
	if dir, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
		return filepath.Join(dir, filepath.Base(path))
	}
	return path
}
