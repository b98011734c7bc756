package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// auditLines returns the records of an audit log as generic JSON objects.
func auditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m), "line %q", line)
		out = append(out, m)
	}
	return out
}

// ofEvent returns the records of event e.
func ofEvent(records []map[string]any, e audit.EventType) []map[string]any {
	var out []map[string]any
	for _, r := range records {
		if r["event"] == string(e) {
			out = append(out, r)
		}
	}
	return out
}

// unlockFixture opens the ring of f's volume with its key file, as a key
// management command would.
func unlockFixture(t *testing.T, backing string) (*keys.Config, *keys.Ring) {
	t.Helper()
	cfg, err := keys.ReadConfig(backing)
	require.NoError(t, err)
	ctx := context.Background()
	ring, _, err := keys.Unlock(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}),
		keys.UnlockOptions{})
	require.NoError(t, err)
	return cfg, ring
}

// appendEvents appends keyed events to the volume's audit log, as the key
// management commands do through openAudit.
func appendEvents(t *testing.T, backing string, events ...audit.Event) {
	t.Helper()
	cfg, ring := unlockFixture(t, backing)
	l, err := audit.OpenVolume(backing, cfg.VolumeID, audit.Options{Keys: ring})
	require.NoError(t, err)
	for _, e := range events {
		require.NoError(t, l.Record(context.Background(), e))
	}
	require.NoError(t, l.Close())
}

func TestAuditInitRecord(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	logPath := filepath.Join(f.dir, "logs", "app.audit.jsonl")
	require.NoError(t, os.Mkdir(filepath.Dir(logPath), 0o700))
	requireOK(t, cli(t, "init", f.backing, "--master", f.keyURI(), "--audit-log", logPath))

	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)
	records := auditLines(t, logPath)
	require.Len(t, records, 2, "init and the closing checkpoint")
	init := ofEvent(records, audit.EventInit)
	require.Len(t, init, 1)
	r := init[0]
	host, _ := os.Hostname()
	assert.Equal(t, cfg.VolumeID.String(), r["volume"])
	assert.Equal(t, "ok", r["outcome"])
	assert.Equal(t, cfg.Masters[0].ID, r["master"])
	assert.EqualValues(t, cfg.Ring.Keys[0].ID, r["ring_key"])
	assert.EqualValues(t, cfg.Ring.Keys[0].ID, r["mac_key"])
	assert.Equal(t, map[string]any{"masters": cfg.Masters[0].ID + " (file)", "log": logPath},
		r["detail"])
	assert.Equal(t, host, r["host"])
	assert.EqualValues(t, os.Getuid(), r["uid"])
	assert.EqualValues(t, os.Getpid(), r["pid"], "init ran in this process")
	assert.Equal(t, audit.Genesis(cfg.VolumeID), r["prev"])
	assert.Equal(t, "checkpoint", records[1]["event"])

	s, err := audit.ReadSettings(f.backing)
	require.NoError(t, err)
	assert.Equal(t, logPath, s.Log)

	v := cli(t, "audit", "verify", logPath, "--backing", f.backing)
	requireOK(t, v)
	assert.Contains(t, v.stdout, "is intact")
	assert.Contains(t, v.stdout, "2 valid")
	assert.Contains(t, v.stdout, "head anchor  matches the last record")

	again := cli(t, "init", filepath.Join(f.dir, "other"), "--master", f.keyURI(),
		"--audit-log", logPath)
	assert.NotEqual(t, exitOK, again.code, "another volume must not share the log")
}

func TestAuditDefaultPath(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)
	want := filepath.Join(os.Getenv(audit.DirEnv), cfg.VolumeID.String()+".audit.jsonl")
	assert.Len(t, ofEvent(auditLines(t, want), audit.EventInit), 1)
	_, err = os.Stat(audit.SettingsPath(f.backing))
	assert.ErrorIs(t, err, os.ErrNotExist, "default settings need no file")

	r := cli(t, "audit", "config", f.backing)
	requireOK(t, r)
	assert.Contains(t, r.stdout, want+" (default)")
	st := cli(t, "status", f.backing)
	requireOK(t, st)
	assert.Contains(t, st.stdout, "audit log:        "+want)
	st = cli(t, "status", f.backing, "--json")
	requireOK(t, st)
	assert.Contains(t, st.stdout, `"audit_log": "`+want+`"`)
	assert.Contains(t, r.stdout, "syslog copy  off")
}

func TestAuditInitRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name, log, want string
	}{
		{"missing folder", filepath.Join(f.dir, "nope", "a.log"), "does not exist"},
		{"inside the backing directory", filepath.Join(f.backing, "a.log"), "inside the backing directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, f.backing)
			r := cli(t, "init", f.backing, "--master", f.keyURI(), "--audit-log", tt.log)
			assert.NotEqual(t, exitOK, r.code)
			assert.Contains(t, r.stderr, tt.want)
			assert.Equal(t, before, snapshot(t, f.backing), "nothing created")
		})
	}
}

// tamperedLog builds a log of six records (init, checkpoint, three key
// events, checkpoint) for f's volume and returns its path.
func tamperedLog(t *testing.T, f *fixture) string {
	t.Helper()
	logPath := filepath.Join(f.dir, "audit.jsonl")
	requireOK(t, cli(t, "init", f.backing, "--master", f.keyURI(), "--audit-log", logPath))
	appendEvents(t, f.backing,
		audit.Event{Type: audit.EventMasterAdded, Master: "0a0b0c0d"},
		audit.Event{Type: audit.EventRotationStarted, RingKey: 42},
		audit.Event{Type: audit.EventBackupExported, Detail: map[string]string{"file": "/b"}})
	require.Len(t, auditLines(t, logPath), 6)
	return logPath
}

func TestAuditVerifyCLI(t *testing.T) {
	t.Parallel()
	split := func(b []byte) [][]byte {
		l := bytes.SplitAfter(b, []byte("\n"))
		return l[:len(l)-1]
	}
	tests := []struct {
		name    string
		keyless bool
		change  func(l [][]byte) [][]byte
		want    string
	}{
		{"edited field", false, func(l [][]byte) [][]byte {
			l[2] = bytes.Replace(l[2], []byte(`"0a0b0c0d"`), []byte(`"0a0b0c0e"`), 1)
			return l
		}, "line 3 (seq 3): MAC does not match"},
		{"edited field, chain only", true, func(l [][]byte) [][]byte {
			l[2] = bytes.Replace(l[2], []byte(`"0a0b0c0d"`), []byte(`"0a0b0c0e"`), 1)
			return l
		}, "line 4 (seq 4): prev is not the hash of line 3"},
		{"deleted line", false, func(l [][]byte) [][]byte {
			return append(l[:3:3], l[4:]...)
		}, "line 4 (seq 5): seq 5 where 4 was due"},
		{"reordered lines", false, func(l [][]byte) [][]byte {
			l[2], l[3] = l[3], l[2]
			return l
		}, "line 3 (seq 4): seq 4 where 3 was due"},
		{"truncated tail", false, func(l [][]byte) [][]byte {
			return l[:4]
		}, "line 4 (seq 4): log ends at seq 4, but the head anchor says seq 6"},
		{"appended forged line", false, func(l [][]byte) [][]byte {
			var last struct {
				Volume string `json:"volume"`
			}
			require.NoError(t, json.Unmarshal(l[5], &last))
			forged := fmt.Sprintf(`{"seq":7,"time":"2026-12-04T10:00:00Z","host":"h","uid":0,`+
				`"pid":1,"volume":"%s","event":"master-added","outcome":"ok","prev":"%s"}`+"\n",
				last.Volume, audit.LineHash(l[5]))
			return append(l, []byte(forged))
		}, "line 7 (seq 7): master-added record has no MAC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			logPath := tamperedLog(t, f)
			args := []string{"audit", "verify", logPath, "--backing", f.backing}
			if tt.keyless {
				args = append(args, "--chain-only")
			}
			requireOK(t, cli(t, args...))

			b, err := os.ReadFile(logPath)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(logPath, bytes.Join(tt.change(split(b)), nil), 0o600))
			assertFailure(t, cli(t, args...), exitFailure, tt.want)
		})
	}
}

func TestAuditVerifyWithoutBacking(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	logPath := tamperedLog(t, f)
	r := cli(t, "audit", "verify", logPath)
	requireOK(t, r)
	assert.Contains(t, r.stdout, "MACs         not checked: 6 records carry one")
	assert.Contains(t, r.stdout, "head anchor  not checked")

	assertFailure(t, cli(t, "audit", "verify", logPath, "--chain-only"), exitUsage, "need --backing")
	assertFailure(t, cli(t, "audit", "verify", filepath.Join(f.dir, "nope")), exitFailure,
		"no such file")
}

func TestAuditShow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	logPath := tamperedLog(t, f)
	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)

	rows := func(r result) []string {
		requireOK(t, r)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		require.True(t, strings.HasPrefix(lines[0], "SEQ"), r.stdout)
		return lines[1:]
	}
	all := rows(cli(t, "audit", "show", logPath))
	assert.Len(t, all, 6)
	assert.Regexp(t, `^1 +\S+ +init +ok +`+cfg.Masters[0].ID+` +\d+ +`, all[0])

	got := rows(cli(t, "audit", "show", logPath, "--event", "master-added,backup-exported"))
	require.Len(t, got, 2)
	assert.Contains(t, got[0], "master-added")
	assert.Contains(t, got[1], "file=/b")

	got = rows(cli(t, "audit", "show", logPath, "--key", "42"))
	require.Len(t, got, 1)
	assert.Contains(t, got[0], "rotation-started")
	got = rows(cli(t, "audit", "show", logPath, "--key", cfg.Masters[0].ID))
	require.Len(t, got, 1)
	assert.Contains(t, got[0], "init")

	assert.Len(t, rows(cli(t, "audit", "show", logPath, "--since", "1h")), 6)
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	assert.Empty(t, rows(cli(t, "audit", "show", logPath, "--since", future)))
	assertFailure(t, cli(t, "audit", "show", logPath, "--since", "yesterday"), exitUsage,
		"--since")

	j := cli(t, "audit", "show", logPath, "--json", "--event", "init")
	requireOK(t, j)
	b, err := os.ReadFile(logPath)
	require.NoError(t, err)
	assert.Equal(t, strings.SplitAfter(string(b), "\n")[0], j.stdout, "the log's own line")
}

func TestAuditConfigMovesLog(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	oldLog := filepath.Join(f.dir, "old.jsonl")
	newLog := filepath.Join(f.dir, "new.jsonl")
	requireOK(t, cli(t, "init", f.backing, "--master", f.keyURI(), "--audit-log", oldLog))

	r := cli(t, "audit", "config", f.backing, "--log", newLog, "--syslog=true")
	requireOK(t, r)
	assert.Contains(t, r.stdout, "audit log    "+newLog)
	assert.Contains(t, r.stdout, "syslog copy  on")

	for _, p := range []string{oldLog, newLog} {
		moved := ofEvent(auditLines(t, p), audit.EventAuditConfig)
		require.Len(t, moved, 1, p)
		assert.Equal(t, map[string]any{"log": newLog, "previous_log": oldLog, "syslog": "true"},
			moved[0]["detail"])
	}
	appendEvents(t, f.backing, audit.Event{Type: audit.EventMasterRemoved, Master: "0a0b0c0d"})
	assert.Len(t, ofEvent(auditLines(t, newLog), audit.EventMasterRemoved), 1)
	requireOK(t, cli(t, "audit", "verify", newLog, "--backing", f.backing))
	requireOK(t, cli(t, "audit", "verify", oldLog))

	assertFailure(t, cli(t, "audit", "config", f.backing, "--log", newLog, "--default-log"),
		exitUsage, "exclude each other")
}

// TestAuditKeyManagementEvents runs the key management commands and checks
// that each leaves exactly one record with its fields, and that the log
// still verifies with the ring.
func TestAuditKeyManagementEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	logPath := filepath.Join(f.dir, "audit.jsonl")
	pass := f.passphraseFile(t, "pass.txt", "the right passphrase")
	wrong := f.passphraseFile(t, "wrong.txt", "not it")
	args := append([]string{"init", f.backing, "--master", f.keyURI(), "--master", "passphrase:",
		"--passphrase-file", pass, "--audit-log", logPath}, cheapArgon2...)
	requireOK(t, cli(t, args...))
	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)
	fileID, passID := cfg.Masters[0].ID, cfg.Masters[1].ID
	primary := cfg.Ring.Keys[0].ID

	second := f.newKey(t, "second.key")
	r := cli(t, "master", "add", f.backing, second, "--with", passID, "--passphrase-file", wrong)
	assert.Equal(t, exitFailure, r.code)
	requireOK(t, cli(t, "master", "add", f.backing, second, "--with", passID,
		"--passphrase-file", pass))
	cfg, err = keys.ReadConfig(f.backing)
	require.NoError(t, err)
	secondID := cfg.Masters[2].ID
	requireOK(t, cli(t, "recovery", "new", f.backing, "--out", filepath.Join(f.dir, "rk.txt")))
	requireOK(t, cli(t, "master", "remove", f.backing, secondID))
	backupFile := filepath.Join(f.dir, "app.backup")
	requireOK(t, cli(t, "backup", f.backing, backupFile))
	require.NoError(t, os.Remove(keys.ConfigPath(f.backing)))
	requireOK(t, cli(t, "restore", f.backing, backupFile))

	records := auditLines(t, logPath)
	for _, r := range records {
		t.Logf("%v %v %v %v %v", r["seq"], r["event"], r["outcome"], r["master"], r["detail"])
	}

	unlocks := ofEvent(records, audit.EventUnlock)
	require.Len(t, unlocks, 1, "the wrong passphrase of the first master add")
	assert.Equal(t, passID, unlocks[0]["master"])
	assert.Contains(t, unlocks[0]["reason"], "wrong master key")

	added := ofEvent(records, audit.EventMasterAdded)
	require.Len(t, added, 2, "master add and recovery new")
	assert.Equal(t, secondID, added[0]["master"])
	assert.Equal(t, map[string]any{"kind": "file", "unlocked_with": passID}, added[0]["detail"])
	assert.EqualValues(t, primary, added[0]["mac_key"])
	assert.Equal(t, "recovery", added[1]["detail"].(map[string]any)["kind"])
	assert.Equal(t, fileID, added[1]["detail"].(map[string]any)["unlocked_with"],
		"the key file unlocks first")
	assert.NotEmpty(t, added[1]["detail"].(map[string]any)["fingerprint"])

	removed := ofEvent(records, audit.EventMasterRemoved)
	require.Len(t, removed, 1)
	assert.Equal(t, secondID, removed[0]["master"])
	assert.Equal(t, "ok", removed[0]["outcome"])
	assert.Equal(t, map[string]any{"kind": "file", "unlocked_with": fileID}, removed[0]["detail"])
	assert.EqualValues(t, primary, removed[0]["mac_key"])

	exported := ofEvent(records, audit.EventBackupExported)
	require.Len(t, exported, 1)
	assert.Equal(t, backupFile, exported[0]["detail"].(map[string]any)["file"])
	assert.Equal(t, "1", exported[0]["detail"].(map[string]any)["generation"])

	restored := ofEvent(records, audit.EventConfigRestored)
	require.Len(t, restored, 1)
	assert.Equal(t, "ok", restored[0]["outcome"])
	assert.Equal(t, backupFile, restored[0]["detail"].(map[string]any)["file"])

	assert.Empty(t, ofEvent(records, audit.EventRecoveryUsed), "no recovery key was used")
	requireOK(t, cli(t, "audit", "verify", logPath, "--backing", f.backing))
}
