package main

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPathRoundTrip(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))

	long := strings.Repeat("long name ", 25) // 250 bytes: a hashed backing name
	plain := []string{"/etc/app/prod-db-password.conf", "/etc/" + long + "/secret.key", "/Ünï cödé"}
	for _, p := range plain {
		require.NoError(t, os.MkdirAll(filepath.Join(f.mnt, filepath.Dir(p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(f.mnt, p), []byte(p), 0o600))
	}

	for _, p := range plain {
		r := cli(t, "path", "encrypt", f.backing, p)
		requireOK(t, r)
		backing := strings.TrimSuffix(r.stdout, "\n")
		require.True(t, strings.HasPrefix(backing, f.backing+"/"), backing)
		for _, c := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
			assert.NotContains(t, backing, c, "plaintext component in the backing path")
		}
		st, err := os.Stat(backing)
		require.NoError(t, err, "the backing path exists")
		assert.True(t, st.Mode().IsRegular())

		// A relative backing path may start with "-" (base64url), so "--" first.
		for _, arg := range []string{backing, strings.TrimPrefix(backing, f.backing+"/")} {
			r = cli(t, "path", "decrypt", f.backing, "--", arg)
			requireOK(t, r)
			assert.Equal(t, p+"\n", r.stdout)
		}
	}

	assertFailure(t, cli(t, "path", "encrypt", f.backing, "/nope/x"), exitFailure, "failed to map")
	assertFailure(t, cli(t, "path", "decrypt", f.backing, "/elsewhere/x"), exitUsage,
		"not inside the backing directory")
	assertFailure(t, cli(t, "path", "decrypt", f.backing, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), exitFailure,
		"invalid encrypted name")
	assertFailure(t, cli(t, "path", "decrypt", f.backing, ".coffer/volume.json"), exitFailure,
		"reserved name")

	// A name that starts with "-" is taken for flags unless "--" comes first.
	dash := "-5L5pAAAAAAAAAAAAAAAAAAAAAAAAAA"
	r := cli(t, "path", "decrypt", f.backing, dash)
	assertFailure(t, r, exitUsage, "unknown shorthand flag: '5' in -5L5p")
	assert.Contains(t, r.stderr,
		"hint: an argument starting with - needs -- before it: coffer path decrypt [flags] -- ARGS")
	assertFailure(t, cli(t, "path", "decrypt", f.backing, "--", dash), exitFailure,
		"invalid encrypted name")
}

func TestPlaintextNamesVolume(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	requireOK(t, cli(t, "init", f.backing, "--master", f.keyURI(), "--plaintext-names"))
	st := cli(t, "status", f.backing)
	requireOK(t, st)
	assert.Regexp(t, `names: +plaintext\n`, st.stdout)
	requireOK(t, f.mount(t))

	require.NoError(t, os.Mkdir(filepath.Join(f.mnt, "dir"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "dir", "app.config"), []byte("hunter2"), 0o600))
	require.NoError(t, os.Symlink("app.config", filepath.Join(f.mnt, "dir", "link")))
	stored, err := os.ReadFile(filepath.Join(f.backing, "dir", "app.config"))
	require.NoError(t, err)
	assert.NotContains(t, string(stored), "hunter2")
	target, err := os.Readlink(filepath.Join(f.backing, "dir", "link"))
	require.NoError(t, err)
	assert.Equal(t, "app.config", target, "plaintext names keep backing symlinks as they are")
	_, err = os.Stat(filepath.Join(f.backing, ".coffer.dir"))
	assert.ErrorIs(t, err, fs.ErrNotExist, "no directory records")

	r := cli(t, "path", "encrypt", f.backing, "/dir/app.config")
	requireOK(t, r)
	assert.Equal(t, filepath.Join(f.backing, "dir", "app.config")+"\n", r.stdout)
	r = cli(t, "path", "decrypt", f.backing, "dir/app.config")
	requireOK(t, r)
	assert.Equal(t, "/dir/app.config\n", r.stdout)
}

// TestPathRoundTripRelativeBacking runs path encrypt and decrypt with a
// relative BACKING from the directory above it, as a person would: what
// encrypt prints (relative to the current directory) decrypts. The
// commands run as processes, each in that directory.
func TestPathRoundTripRelativeBacking(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	require.NoError(t, os.MkdirAll(filepath.Join(f.mnt, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "etc", "db.conf"), []byte("x"), 0o600))

	run := func(args ...string) result {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Dir = f.dir
		cmd.Env = append(os.Environ(), mainEnv+"=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		_ = cmd.Run()
		return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
	}
	rel := filepath.Base(f.backing)
	r := run("path", "encrypt", rel, "/etc/db.conf")
	requireOK(t, r)
	enc := strings.TrimSuffix(r.stdout, "\n")
	require.True(t, strings.HasPrefix(enc, rel+"/"), enc)
	_, err := os.Stat(filepath.Join(f.dir, enc))
	require.NoError(t, err, "the printed path names the backing file from the current directory")

	r = run("path", "decrypt", rel, "--", enc)
	requireOK(t, r)
	assert.Equal(t, "/etc/db.conf\n", r.stdout)
	// Relative to BACKING still works.
	r = run("path", "decrypt", rel, "--", strings.TrimPrefix(enc, rel+"/"))
	requireOK(t, r)
	assert.Equal(t, "/etc/db.conf\n", r.stdout)
}
