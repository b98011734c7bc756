package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
)

// mainEnv makes the test binary act as the coffer command, so that tests can
// run it as a process, and so that a background mount can re-execute it.
const mainEnv = "COFFER_TEST_MAIN"

// Most tests of this package wait on mounts, processes and servers, and
// call t.Parallel() first. A test must not when it (or a helper it calls)
// changes what the whole process shares: t.Setenv and t.Chdir (go test
// panics then), and the helpers that set variables (softhsmtest.New, the
// kmstest, kvtest, gcpkmstest and vaulttest servers), or a package hook
// such as fuseConfPath or journalSocket. Sequential tests all finish before
// the parallel ones resume, so they never see each other. Environment for a
// coffer process (COFFER_TEST_KILL_POINT, COFFER_TEST_PAUSE) goes in its
// cmd.Env, never in the test process's.

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
	}
	// Default audit logs go to a folder of the test run, not /var/log.
	if os.Getenv(audit.DirEnv) == "" {
		dir, err := os.MkdirTemp("", "coffer-audit-test-")
		if err != nil {
			panic(err)
		}
		os.Setenv(audit.DirEnv, dir)
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// result is what one coffer invocation produced.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs coffer in this process.
func cli(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// cliProcess runs coffer as a separate process (this test binary), as needed
// for mounts: a background mount re-executes the binary.
func cliProcess(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		require.NoError(t, err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// requireOK fails the test unless r succeeded.
func requireOK(t *testing.T, r result) {
	t.Helper()
	require.Equal(t, exitOK, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
}

// assertFailure checks that r failed with code, printing exactly one
// "coffer: error:" line that contains want, followed only by hint lines.
func assertFailure(t *testing.T, r result, code int, want string) {
	t.Helper()
	assert.Equal(t, code, r.code, "stderr: %s", r.stderr)
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	require.NotEmpty(t, lines)
	var errLines []string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "coffer: error: "):
			errLines = append(errLines, l)
		case strings.HasPrefix(l, "hint: "), strings.HasPrefix(l, "coffer: warning: "):
		default:
			if !strings.HasPrefix(l, "{") { // JSON log lines are allowed
				t.Errorf("unexpected stderr line %q", l)
			}
		}
	}
	require.Len(t, errLines, 1, "stderr: %s", r.stderr)
	assert.Contains(t, errLines[0], want)
}

// snapshot records every entry under dir: its mode and, for files, a hash of
// the content, so that tests can check a directory was left unchanged.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return out
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if filepath.Base(rel) == audit.AnchorName && filepath.Base(filepath.Dir(rel)) == keys.DirName {
			return nil // moves with every audit record, failed unlocks included
		}
		desc := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " " + hex.EncodeToString(sum[:])
		}
		out[rel] = desc
		return nil
	})
	require.NoError(t, err)
	return out
}
