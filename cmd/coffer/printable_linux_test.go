//go:build linux

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

// TestControlCharactersEscaped is breaker3's F10: strings from files that
// whoever can write the backing directory or the audit log controls (a
// mount record's host, a master URI, an audit record's reason and detail)
// reached the terminal raw: escape sequences and forged lines. Human
// output escapes them now.
func TestControlCharactersEscaped(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	logPath := filepath.Join(f.dir, "audit.jsonl")
	requireOK(t, cli(t, "init", f.backing, "--master", f.keyURI(), "--audit-log", logPath))
	const evil = "evil\x1b[31mRED\x1b[0m\nFAKE LINE\x1b]0;T\x07"
	const shown = `evil\x1b[31mRED\x1b[0m\nFAKE LINE\x1b]0;T\a`

	rec, err := json.Marshal(map[string]any{"version": 1, "host": evil, "pid": 1,
		"generation": 1, "updated": "2026-12-05T01:00:00Z", "mount_point": "/x"})
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(f.backing, keys.DirName, keys.MountsName), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(f.backing, keys.DirName, keys.MountsName,
		"evil-1.json"), rec, 0o600))

	cfgPath := keys.ConfigPath(f.backing)
	var cfg map[string]any
	b, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &cfg))
	cfg["masters"].([]any)[0].(map[string]any)["uri"] = "file:///tmp/x" + evil
	b, err = json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfgPath, b, 0o600))

	lines := strings.Split(strings.TrimSpace(readString(t, logPath)), "\n")
	var r map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &r))
	r["seq"] = float64(len(lines) + 1)
	r["reason"] = evil
	r["detail"] = map[string]string{"mountpoint": evil}
	b, err = json.Marshal(r)
	require.NoError(t, err)
	fl, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = fl.Write(append(b, '\n'))
	require.NoError(t, err)
	require.NoError(t, fl.Close())

	for _, args := range [][]string{
		{"status", f.backing},
		{"master", "list", f.backing},
		{"audit", "show", logPath},
	} {
		res := cli(t, args...)
		requireOK(t, res)
		assert.NotContains(t, res.stdout, "\x1b", "%v", args)
		assert.NotContains(t, res.stdout, "\x07", "%v", args)
		assert.NotContains(t, res.stdout, "\nFAKE LINE", "%v", args)
		assert.Contains(t, res.stdout, shown, "%v", args)
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
