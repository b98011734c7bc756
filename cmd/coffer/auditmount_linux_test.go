package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/audit"
)

// TestAuditConfigLogInsideMount refuses an audit log inside a mount of the
// same volume: it would exist only while mounted, and the next mount could
// not open it. Nothing changes and nothing is written into the mount.
func TestAuditConfigLogInsideMount(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	t.Cleanup(func() { _ = cliProcess(t, "unmount", f.mnt) })
	settings := cliProcess(t, "audit", "config", f.backing)
	requireOK(t, settings)

	in := filepath.Join(f.mnt, "audit.jsonl")
	r := cliProcess(t, "audit", "config", f.backing, "--log", in)
	assertFailure(t, r, exitUsage, "--log "+in+" is inside "+f.mnt+", a mount of this volume")
	assert.Contains(t, r.stderr, "hint: keep the audit log outside the volume's mounts")
	_, err := os.Lstat(in)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Equal(t, settings.stdout, cliProcess(t, "audit", "config", f.backing).stdout)
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	requireOK(t, f.mount(t)) // still mountable
}

// TestAuditConfigLeavesMissingLog moves a volume away from an audit log
// that is gone (as one inside an unmounted mount point is): the old log is
// not created again to record the move, so no file appears in the clear.
func TestAuditConfigLeavesMissingLog(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	gone := filepath.Join(f.dir, "mp")
	require.NoError(t, os.Mkdir(gone, 0o700))
	old := filepath.Join(gone, "audit.jsonl")
	requireOK(t, cli(t, "audit", "config", f.backing, "--log", old))
	require.NoError(t, os.Remove(old))

	r := cli(t, "audit", "config", f.backing, "--default-log")
	requireOK(t, r)
	recs := auditLines(t, auditLogOf(t, f.backing))
	assert.Equal(t, string(audit.EventAuditConfig), recs[len(recs)-1]["event"])
	_, err := os.Lstat(old)
	assert.ErrorIs(t, err, os.ErrNotExist, "the old audit log was created again")
	r = cli(t, "audit", "config", f.backing)
	requireOK(t, r)
	assert.Contains(t, r.stdout, "(default)")
}
