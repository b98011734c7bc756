package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
)

// cliStdin runs coffer in this process with stdin as standard input.
func cliStdin(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// newKey creates another key file in f.dir and returns its URI.
func (f *fixture) newKey(t *testing.T, name string) string {
	t.Helper()
	uri := "file://" + filepath.Join(f.dir, name)
	requireOK(t, cli(t, "keys", "create", uri))
	return uri
}

// masters returns "coffer master list --json" of f.backing.
func (f *fixture) masters(t *testing.T) []masterListEntry {
	t.Helper()
	r := cli(t, "master", "list", f.backing, "--json")
	requireOK(t, r)
	var list []masterListEntry
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list))
	return list
}

// masterID returns the ID of the master key with uri.
func (f *fixture) masterID(t *testing.T, uri string) string {
	t.Helper()
	for _, m := range f.masters(t) {
		if m.URI == uri {
			return m.ID
		}
	}
	t.Fatalf("volume has no master key %s", uri)
	return ""
}

func (f *fixture) config(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(keys.ConfigPath(f.backing))
	require.NoError(t, err)
	return b
}

func TestMasterAddListRemove(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	first := f.masterID(t, f.keyURI())
	second := f.newKey(t, "second.key")

	r := cli(t, "master", "add", f.backing, second)
	requireOK(t, r)
	assert.Regexp(t, `^added master key [0-9a-f]{8} \(file file://\S+second.key\) to volume `+
		`[0-9a-f]{32}, unlocked with `+first+"\n$", r.stdout)

	list := f.masters(t)
	require.Len(t, list, 2)
	assert.Equal(t, []string{f.keyURI(), second}, []string{list[0].URI, list[1].URI})
	for _, m := range list {
		assert.Equal(t, "file", m.Kind)
		assert.WithinDuration(t, time.Now(), m.Added, time.Minute)
		assert.Nil(t, m.LastUsed, "no mount has used it yet")
	}

	r = cli(t, "master", "list", f.backing)
	requireOK(t, r)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3)
	assert.Regexp(t, `^ID +KIND +ADDED +LAST USED +URI$`, lines[0])
	assert.Regexp(t, `^`+list[1].ID+` +file +\S+ +- +`+second+`$`, lines[2])

	r = cli(t, "master", "remove", f.backing, first)
	requireOK(t, r)
	assert.Equal(t, "removed master key "+first+" (file "+f.keyURI()+")\n", r.stdout)
	list = f.masters(t)
	require.Len(t, list, 1)
	assert.Equal(t, second, list[0].URI)

	// The remaining key unlocks: it can add the first one back.
	requireOK(t, cli(t, "master", "add", f.backing, f.keyURI()))
	assert.Len(t, f.masters(t), 2)
}

func TestMasterRemoveRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	id := f.masterID(t, f.keyURI())
	tests := []struct {
		name string
		args []string
		code int
		want string
		hint string
	}{
		{"last master key", []string{"master", "remove", f.backing, id}, exitFailure,
			"cannot remove the last master key " + id, "hint: add another master key first"},
		{"unknown ID", []string{"master", "remove", f.backing, "0badc0de"}, exitFailure,
			`no such master key "0badc0de" (have ` + id + ")", "hint: 'coffer master list"},
		{"force is not offered", []string{"master", "remove", f.backing, id, "--force"}, exitUsage,
			"unknown flag: --force", ""},
		{"missing ID", []string{"master", "remove", f.backing}, exitUsage, "missing argument ID", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, f.dir)
			r := cli(t, tt.args...)
			assertFailure(t, r, tt.code, tt.want)
			if tt.hint != "" {
				assert.Contains(t, r.stderr, tt.hint)
			}
			assert.Equal(t, before, snapshot(t, f.dir))
		})
	}
}

// TestMasterRemoveLastUnattended covers the refusal to leave a volume with
// only master keys a person must type (passphrase, recovery key).
func TestMasterRemoveLastUnattended(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	fileID := f.masterID(t, f.keyURI())
	pass := f.passphraseFile(t, "pass.txt", "correct horse")
	requireOK(t, cli(t, append([]string{"master", "add", f.backing, "passphrase:",
		"--new-passphrase-file", pass}, cheapArgon2...)...))
	passID := f.masterID(t, "passphrase:")
	requireOK(t, cli(t, "recovery", "new", f.backing, "--out", filepath.Join(f.dir, "rk.txt")))
	recoveryID := f.masterID(t, "recovery:")

	before := snapshot(t, f.dir)
	r := cli(t, "master", "remove", f.backing, fileID)
	assertFailure(t, r, exitFailure, "failed to remove master key: "+fileID+" (file) is the last "+
		"master key that unlocks without a person; only passphrase "+passID+", recovery "+
		recoveryID+" would be left, and a mount at boot would wait for someone to type one")
	assert.Contains(t, r.stderr, "hint: add a key that unlocks unattended first")
	assert.Contains(t, r.stderr, "hint: or, if a person mounts this volume, pass "+
		"--allow-interactive-only")
	assert.Equal(t, before, snapshot(t, f.dir), "a refusal changes nothing")

	// With a second unattended key the first may go, and the second is then
	// the last one again.
	second := f.newKey(t, "second.key")
	requireOK(t, cli(t, "master", "add", f.backing, second))
	secondID := f.masterID(t, second)
	requireOK(t, cli(t, "master", "remove", f.backing, fileID))
	r = cli(t, "master", "remove", f.backing, secondID)
	assertFailure(t, r, exitFailure, secondID+" (file) is the last master key that unlocks "+
		"without a person")

	// A key a person types may always go.
	requireOK(t, cli(t, "master", "remove", f.backing, passID, "--with", secondID))

	r = cli(t, "master", "remove", f.backing, secondID, "--allow-interactive-only")
	requireOK(t, r)
	assert.Equal(t, "removed master key "+secondID+" (file "+second+")\n", r.stdout)
	list := f.masters(t)
	require.Len(t, list, 1)
	assert.Equal(t, recoveryID, list[0].ID)
}

// TestMasterRemoveNoUnattendedBefore: a volume that never had a key
// unlocking without a person is mounted by hand; removing one of its keys
// is not refused.
func TestMasterRemoveNoUnattendedBefore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pass := f.passphraseFile(t, "pass.txt", "correct horse")
	requireOK(t, cli(t, append([]string{"init", f.backing, "--master", "passphrase:",
		"--passphrase-file", pass}, cheapArgon2...)...))
	passID := f.masterID(t, "passphrase:")
	requireOK(t, cli(t, "recovery", "new", f.backing, "--out", filepath.Join(f.dir, "rk.txt"),
		"--passphrase-file", pass))
	requireOK(t, cli(t, "master", "remove", f.backing, passID, "--passphrase-file", pass))
	list := f.masters(t)
	require.Len(t, list, 1)
	assert.Equal(t, "recovery", list[0].Kind)
}

func TestMasterAddRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, f *fixture) []string // the arguments
		code  int
		want  string
		hint  string
	}{
		{"new key file missing", func(t *testing.T, f *fixture) []string {
			return []string{"master", "add", f.backing, "file://" + filepath.Join(f.dir, "nope.key")}
		}, exitFailure, "no such file or directory", ""},
		{"new key inside the backing directory", func(t *testing.T, f *fixture) []string {
			require.NoError(t, os.WriteFile(filepath.Join(f.dir, "k"), make([]byte, 32), 0o600))
			require.NoError(t, os.Rename(filepath.Join(f.dir, "k"), filepath.Join(f.backing, "in.key")))
			return []string{"master", "add", f.backing, "file://" + filepath.Join(f.backing, "in.key")}
		}, exitFailure, "key file is inside the backing directory", ""},
		{"already enrolled", func(t *testing.T, f *fixture) []string {
			return []string{"master", "add", f.backing, f.keyURI()}
		}, exitFailure, "master key is already enrolled", "hint: 'coffer master list"},
		{"existing key replaced (wrong key)", func(t *testing.T, f *fixture) []string {
			require.NoError(t, os.Remove(f.key))
			requireOK(t, cli(t, "keys", "create", f.keyURI()))
			return []string{"master", "add", f.backing, f.newKey(t, "new.key")}
		}, exitFailure, "wrong master key", "hint: an existing master key must unlock the volume"},
		{"existing key lost", func(t *testing.T, f *fixture) []string {
			uri := f.newKey(t, "new.key")
			require.NoError(t, os.Remove(f.key))
			return []string{"master", "add", f.backing, uri}
		}, exitFailure, "no master key unlocked the volume", ""},
		{"--with unknown", func(t *testing.T, f *fixture) []string {
			return []string{"master", "add", f.backing, f.newKey(t, "new.key"), "--with", "0badc0de"}
		}, exitFailure, "volume has no master key 0badc0de", "hint: its master keys:"},
		{"recovery without a recovery key", func(t *testing.T, f *fixture) []string {
			return []string{"master", "add", f.backing, "recovery:"}
		}, exitFailure, "make a new recovery key with 'coffer recovery new BACKING'", ""},
		{"new passphrase file without passphrase:", func(t *testing.T, f *fixture) []string {
			return []string{"master", "add", f.backing, f.newKey(t, "new.key"),
				"--new-passphrase-file", "/nonexistent"}
		}, exitUsage, "--new-passphrase-file needs the URI passphrase:", ""},
		{"malformed URI", func(t *testing.T, f *fixture) []string {
			return []string{"master", "add", f.backing, "file://relative.key"}
		}, exitUsage, "malformed master key URI", ""},
		{"not a volume", func(t *testing.T, f *fixture) []string {
			return []string{"master", "add", f.dir, f.newKey(t, "new.key")}
		}, exitFailure, "not initialised", "hint: initialise it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.init(t)
			args := tt.setup(t, f)
			before := f.config(t)
			beforeTree := snapshot(t, f.backing)

			r := cli(t, args...)
			assertFailure(t, r, tt.code, tt.want)
			if tt.hint != "" {
				assert.Contains(t, r.stderr, tt.hint)
			}
			assert.Equal(t, before, f.config(t), "volume.json changed")
			assert.Equal(t, beforeTree, snapshot(t, f.backing), "the backing directory changed")
		})
	}
}

func TestMasterAddPassphrase(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	pass := f.passphraseFile(t, "pass.txt", "correct horse")
	args := append([]string{"master", "add", f.backing, "passphrase:", "--new-passphrase-file", pass},
		cheapArgon2...)
	requireOK(t, cli(t, args...))
	passID := f.masterID(t, "passphrase:")

	// Only the passphrase unlocks now: the key file is gone.
	require.NoError(t, os.Remove(f.key))
	third := f.newKey(t, "third.key")
	r := cli(t, "master", "add", f.backing, third, "--with", passID)
	assertFailure(t, r, exitFailure, "no terminal to prompt on")
	wrong := f.passphraseFile(t, "wrong.txt", "wrong horse")
	r = cli(t, "master", "add", f.backing, third, "--with", passID, "--passphrase-file", wrong)
	assertFailure(t, r, exitFailure, "wrong master key")
	r = cli(t, "master", "add", f.backing, third, "--with", "passphrase:", "--passphrase-file", pass)
	requireOK(t, r)
	assert.Contains(t, r.stdout, "unlocked with "+passID)
	assert.Len(t, f.masters(t), 3)
}

func TestMasterAddLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	for i := range keys.MaxMasters - 1 {
		requireOK(t, cli(t, "master", "add", f.backing, f.newKey(t, fmt.Sprintf("k%02d.key", i))))
	}
	require.Len(t, f.masters(t), 32)
	uri := f.newKey(t, "one-too-many.key")
	before := f.config(t)
	r := cli(t, "master", "add", f.backing, uri)
	assertFailure(t, r, exitFailure, "volume has the most master keys allowed: it has 32, the limit")
	assert.Contains(t, r.stderr, "hint: remove one first: coffer master remove")
	assert.Equal(t, before, f.config(t))
}

func TestConcurrentMasterAdds(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	const n = 6
	uris := make([]string, n)
	for i := range uris {
		uris[i] = f.newKey(t, fmt.Sprintf("k%02d.key", i))
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = cliProcess(t, "master", "add", f.backing, uris[i]) })
	}
	wg.Wait()
	for _, r := range results {
		requireOK(t, r)
	}
	got := map[string]bool{}
	for _, m := range f.masters(t) {
		got[m.URI] = true
	}
	assert.Len(t, got, n+1)
	for _, u := range uris {
		assert.True(t, got[u], "master key %s was lost", u)
	}
}

func TestAuditMasterEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	logPath := filepath.Join(f.dir, "audit.jsonl")
	requireOK(t, cli(t, "init", f.backing, "--master", f.keyURI(), "--audit-log", logPath))
	first := f.masterID(t, f.keyURI())
	second := f.newKey(t, "second.key")
	requireOK(t, cli(t, "master", "add", f.backing, second))
	secondID := f.masterID(t, second)
	recoveryFile := filepath.Join(f.dir, "recovery.txt")
	requireOK(t, cli(t, "recovery", "new", f.backing, "--out", recoveryFile, "--with", secondID))
	third := f.newKey(t, "third.key")
	requireOK(t, cli(t, "master", "add", f.backing, third, "--recovery-key", recoveryFile))
	requireOK(t, cli(t, "master", "remove", f.backing, secondID))

	list := f.masters(t)
	require.Len(t, list, 3)
	recoveryID, thirdID := list[1].ID, list[2].ID
	records := auditLines(t, logPath)
	added := ofEvent(records, audit.EventMasterAdded)
	require.Len(t, added, 3)
	want := [][3]string{{secondID, "file", first}, {recoveryID, "recovery", secondID},
		{thirdID, "file", recoveryID}}
	for i, r := range added {
		detail := r["detail"].(map[string]any)
		assert.Equal(t, want[i], [3]string{r["master"].(string), detail["kind"].(string),
			detail["unlocked_with"].(string)})
		assert.NotEmpty(t, r["mac"], "master-added must carry a MAC")
	}
	used := ofEvent(records, audit.EventRecoveryUsed)
	require.Len(t, used, 1)
	assert.Equal(t, recoveryID, used[0]["master"])
	removed := ofEvent(records, audit.EventMasterRemoved)
	require.Len(t, removed, 1)
	assert.Equal(t, secondID, removed[0]["master"])
	assert.NotEmpty(t, removed[0]["mac"])
	assert.Empty(t, ofEvent(records, audit.EventUnlock), "no master key failed")

	r := cli(t, "audit", "verify", logPath, "--backing", f.backing)
	requireOK(t, r)
}
