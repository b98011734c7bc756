package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
)

// setAuditLog writes the volume's audit settings by hand, as someone who
// can write the backing directory (but not the log's folder) could.
func setAuditLog(t *testing.T, backing, log string) {
	t.Helper()
	require.NoError(t, os.WriteFile(audit.SettingsPath(backing),
		[]byte(`{"version":1,"log":"`+log+`"}`+"\n"), 0o600))
}

// backupRecords runs a backup (one audit record, no key needed) and returns
// its result.
func backupRecords(t *testing.T, f *fixture) result {
	t.Helper()
	out := filepath.Join(t.TempDir(), "backup.json")
	return cli(t, "backup", f.backing, out)
}

// warnings returns the "coffer: warning:" lines of stderr.
func warnings(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "coffer: warning: ") {
			out = append(out, l)
		}
	}
	return out
}

// TestConfiguredAuditLogNotTrusted is breaker3's F1: .coffer/audit.json is
// not authenticated, and its log path made root create or append to a
// file of the editor's choice. A configured log that is not one this user
// started for the volume is now not used: the command warns in one line
// naming it and why, leaves it as it is, and writes to the default log.
func TestConfiguredAuditLogNotTrusted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target func(t *testing.T, f *fixture) string // returns the path to configure
		why    string
	}{
		{"missing file is not created", func(t *testing.T, f *fixture) string {
			return filepath.Join(f.dir, "nologin")
		}, "it does not exist"},
		{"empty file is not appended to", func(t *testing.T, f *fixture) string {
			p := filepath.Join(f.dir, "empty-config")
			require.NoError(t, os.WriteFile(p, nil, 0o600))
			return p
		}, "it is empty"},
		{"inside the backing directory", func(t *testing.T, f *fixture) string {
			p := filepath.Join(f.backing, "inback.jsonl")
			copyLog(t, f, p)
			return p
		}, "it lies inside /"},
		{"symbolic link to a log of the volume", func(t *testing.T, f *fixture) string {
			real := filepath.Join(f.dir, "real.jsonl")
			copyLog(t, f, real)
			p := filepath.Join(f.dir, "link.jsonl")
			require.NoError(t, os.Symlink(real, p))
			return p
		}, "it is a symbolic link"},
		{"log of another volume", func(t *testing.T, f *fixture) string {
			other := newFixture(t)
			p := filepath.Join(other.dir, "other.jsonl")
			requireOK(t, cli(t, "init", other.backing, "--master", other.keyURI(), "--audit-log", p))
			return p
		}, "its first record is of volume"},
		// breaker4 F4: logrotate's copy of the volume's own log passed
		// every check above, and took the records out of the live log.
		{"renamed copy of the volume's log", func(t *testing.T, f *fixture) string {
			p := filepath.Join(f.dir, filepath.Base(auditLogOf(t, f.backing))+".1")
			copyLog(t, f, p)
			return p
		}, "its records were written to /"},
		{"owned by another user", func(t *testing.T, f *fixture) string {
			p := filepath.Join(f.dir, "theirs.jsonl")
			copyLog(t, f, p)
			require.NoError(t, os.Chown(p, 65534, 65534))
			return p
		}, "it is owned by uid 65534"},
		{"named pipe", func(t *testing.T, f *fixture) string {
			p := filepath.Join(f.dir, "fifo")
			require.NoError(t, syscall.Mkfifo(p, 0o600))
			return p
		}, "it is a named pipe"},
		{"directory", func(t *testing.T, f *fixture) string {
			return f.dir
		}, "it is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.init(t)
			path := tt.target(t, f)
			setAuditLog(t, f.backing, path)
			before := snapshotPath(t, path)
			def := auditLogOf(t, f.backing)
			n := len(auditLines(t, def))

			r := backupRecords(t, f)
			requireOK(t, r)
			w := warnings(r.stderr)
			require.Len(t, w, 1, "stderr: %s", r.stderr)
			assert.Contains(t, w[0], "not using the audit log "+path+" named in "+
				audit.SettingsPath(f.backing)+": "+tt.why)
			assert.Equal(t, before, snapshotPath(t, path), "the configured file was touched")
			assert.Len(t, ofEvent(auditLines(t, def)[n:], audit.EventBackupExported), 1,
				"the record went to the default log")

			r = cli(t, "audit", "config", f.backing)
			requireOK(t, r)
			assert.Contains(t, r.stdout, def+" (default; configured "+path+" not used)")
		})
	}
}

// copyLog copies the volume's default log, a log of this volume, to p.
func copyLog(t *testing.T, f *fixture, p string) {
	t.Helper()
	b, err := os.ReadFile(auditLogOf(t, f.backing))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, b, 0o600))
}

// snapshotPath describes the entry at p (not following a link) and, for a
// regular file, its content.
func snapshotPath(t *testing.T, p string) string {
	t.Helper()
	fi, err := os.Lstat(p)
	if os.IsNotExist(err) {
		return "absent"
	}
	require.NoError(t, err)
	if !fi.Mode().IsRegular() {
		return fi.Mode().String()
	}
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return fi.Mode().String() + " " + string(b)
}

// TestConfiguredAuditLogUsed checks the normal path: a log named by init
// --audit-log or audit config --log starts with a record of the volume and
// is used without a warning; after log rotation renames it away, commands
// warn and use the default log until audit config --log starts it again.
func TestConfiguredAuditLogUsed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	first := filepath.Join(f.dir, "first.jsonl")
	requireOK(t, cli(t, "init", f.backing, "--master", f.keyURI(), "--audit-log", first))
	recs := auditLines(t, first)
	require.NotEmpty(t, recs)
	assert.Equal(t, string(audit.EventInit), recs[0]["event"])
	r := backupRecords(t, f)
	requireOK(t, r)
	assert.Empty(t, warnings(r.stderr))
	assert.Len(t, ofEvent(auditLines(t, first), audit.EventBackupExported), 1)

	// A new empty file named by audit config --log is started with a record.
	second := filepath.Join(f.dir, "second.jsonl")
	require.NoError(t, os.WriteFile(second, nil, 0o600))
	requireOK(t, cli(t, "audit", "config", f.backing, "--log", second))
	recs = auditLines(t, second)
	require.NotEmpty(t, recs)
	assert.Equal(t, string(audit.EventAuditConfig), recs[0]["event"])
	r = backupRecords(t, f)
	requireOK(t, r)
	assert.Empty(t, warnings(r.stderr))
	assert.Len(t, ofEvent(auditLines(t, second), audit.EventBackupExported), 1)

	// Log rotation: renamed away, an empty file created in its place.
	require.NoError(t, os.Rename(second, second+".1"))
	require.NoError(t, os.WriteFile(second, nil, 0o600))
	r = backupRecords(t, f)
	requireOK(t, r)
	require.Len(t, warnings(r.stderr), 1)
	assert.Contains(t, r.stderr, "it is empty")
	assert.Equal(t, "-rw------- ", snapshotPath(t, second))

	// The renamed copy, named by hand, is not taken up either: its records
	// say they were written to second (breaker4 F4).
	setAuditLog(t, f.backing, second+".1")
	r = backupRecords(t, f)
	requireOK(t, r)
	require.Len(t, warnings(r.stderr), 1)
	assert.Contains(t, r.stderr, "its records were written to "+second+" (a copy renamed by log "+
		"rotation?)")

	requireOK(t, cli(t, "audit", "config", f.backing, "--log", second))
	r = backupRecords(t, f)
	requireOK(t, r)
	assert.Empty(t, warnings(r.stderr))
	recs = auditLines(t, second)
	assert.Equal(t, string(audit.EventAuditConfig), recs[0]["event"])
	assert.Len(t, ofEvent(recs, audit.EventBackupExported), 1)
	requireOK(t, cli(t, "audit", "verify", second, "--backing", f.backing, "--chain-only"))
}

// TestAnchorBehindWarning is breaker3's F8: after a command that could not
// move the head anchor (a full backing disk) had appended its records,
// every later command blamed a copied backing directory. The warning now
// names the failed anchor update first, and how to accept the log.
func TestAnchorBehindWarning(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	def := auditLogOf(t, f.backing)
	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)
	// A writer whose anchor updates fail: no backing directory to keep one.
	l, err := audit.Open(def, cfg.VolumeID, audit.Options{})
	require.NoError(t, err)
	require.NoError(t, l.Record(context.Background(), audit.Event{Type: audit.EventBackupExported}))
	require.NoError(t, l.Close())

	r := backupRecords(t, f)
	requireOK(t, r)
	w := warnings(r.stderr)
	require.Len(t, w, 1, "stderr: %s", r.stderr)
	assert.Contains(t, w[0], "past record")
	assert.Contains(t, w[0], "an earlier command could not update the anchor")
	assert.Contains(t, w[0], "then remove "+audit.AnchorPath(f.backing)+" to accept the log")
}
