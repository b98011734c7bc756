package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/keyfile"
)

func TestExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"plain error", errors.New("boom"), exitFailure},
		{"usage error", usageErrorf("bad flag"), exitUsage},
		{"wrapped usage error", fmt.Errorf("context: %w", usageErrorf("bad")), exitUsage},
		{"usage error with hints", withHints(usageErrorf("bad"), "try this"), exitUsage},
		{"wrong key", fmt.Errorf("failed to unlock: %w", keys.ErrWrongKey), exitFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, exitCode(tt.err))
		})
	}
}

func TestPrintError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"plain", errors.New("boom"), "coffer: error: boom\n"},
		{"multi-line message folds", errors.New("fusermount3: failed\n (code 1)\n"),
			"coffer: error: fusermount3: failed (code 1)\n"},
		{"hints in order", withHints(fmt.Errorf("outer: %w", withHints(errors.New("inner"), "second")), "first"),
			"coffer: error: outer: inner\nhint: first\nhint: second\n"},
		{"hint from a typed error", fmt.Errorf("failed to unlock: %w",
			&keyfile.PermissionError{Path: "/k", Mode: 0o644}),
			"coffer: error: failed to unlock: key file /k has mode 0644: group or others can access it; " +
				"run chmod 600 /k\nhint: chmod 600 /k\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			printError(&b, tt.err)
			assert.Equal(t, tt.want, b.String())
		})
	}
}

func TestReadPassphrase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		err            bool
	}{
		{"trailing newline dropped", "secret\n", "secret", false},
		{"CRLF dropped", "secret\r\n", "secret", false},
		{"only one newline dropped", "secret\n\n", "secret\n", false},
		{"no newline", "secret", "secret", false},
		{"inner spaces kept", " a b ", " a b ", false},
		{"empty", "", "", true},
		{"only a newline", "\n", "", true},
		{"too long", strings.Repeat("x", maxPassphraseFile+1), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := readPassphrase(strings.NewReader(tt.in))
			if tt.err {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(s.InsecureBytes()))
			s.Wipe()
		})
	}
}

func TestReadPassphraseFileModes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "pass")
	require.NoError(t, os.WriteFile(p, []byte("pw\n"), 0o644))
	_, err := readPassphraseFile(p)
	assert.ErrorContains(t, err, "accessible to group or others")
	assert.Contains(t, hintsOf(err), "restrict it: chmod 600 "+p)

	require.NoError(t, os.Chmod(p, 0o600))
	s, err := readPassphraseFile(p)
	require.NoError(t, err)
	assert.Equal(t, "pw", string(s.InsecureBytes()))

	_, err = readPassphraseFile(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

// TestPassphraseFileDevice checks that a device is refused as a passphrase
// file, and that an over-long passphrase says "failed to read passphrase"
// once.
func TestPassphraseFileDevice(t *testing.T) {
	t.Parallel()
	_, err := readPassphraseFile(os.DevNull)
	assert.EqualError(t, err, "passphrase file /dev/null is a character device, not a file or a pipe")
	assert.Contains(t, hintsOf(err), "give a file holding the passphrase (mode 0600), or a pipe such as <(command)")

	f := newFixture(t)
	pass := filepath.Join(f.dir, "long")
	require.NoError(t, os.WriteFile(pass, []byte(strings.Repeat("x", maxPassphraseFile+1)), 0o600))
	r := cli(t, "init", f.backing, "--master", "passphrase:", "--passphrase-file", pass)
	assertFailure(t, r, exitFailure, "failed to read passphrase: longer than")
	assert.Equal(t, 1, strings.Count(r.stderr, "failed to read passphrase"), r.stderr)
}

func TestPromptNeedsTerminal(t *testing.T) {
	t.Parallel()
	a := &app{stdin: strings.NewReader("typed\n"), stderr: &bytes.Buffer{}}
	_, err := promptPassphrase(a, "Passphrase: ", false)
	assert.ErrorContains(t, err, "no terminal")
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	log, err := newLogger(&b, "warn", logFormatAuto)
	require.NoError(t, err)
	log.Info().Msg("hidden")
	log.Warn().Msg("shown")
	assert.NotContains(t, b.String(), "hidden")
	assert.Contains(t, b.String(), `"message":"shown"`, "a buffer is not a terminal: JSON expected")

	b.Reset()
	log, err = newLogger(&b, "debug", logFormatConsole)
	require.NoError(t, err)
	log.Debug().Msg("console line")
	assert.Contains(t, b.String(), "console line")
	assert.NotContains(t, b.String(), `"message"`)
}
