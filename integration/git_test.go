//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGit runs the same git session in a plain directory and in the mount:
// init, add, commit, log, status, a second commit with a rename and a
// delete, fsck, gc (packs, mmap), fsck again and a local clone (hard links).
// Authors and dates are fixed, so commit hashes must be equal.
func TestGit(t *testing.T) {
	requireTools(t, "git", "grep")
	v := newVolume(t)
	plain := t.TempDir()
	marker := fixtureMarker(t, "git")

	want := gitSession(t, plain, marker)
	got := gitSession(t, v.mnt, marker)
	require.Equal(t, len(want), len(got))
	for i := range want {
		assert.Equal(t, want[i], got[i], "step %d", i)
	}
	assert.Empty(t, got[0], "status after the first commit")
	assert.Equal(t, 1, strings.Count(got[1], "\n"), "log after the first commit: %s", got[1])
	assert.Empty(t, got[2], "status after the second commit")

	ws := snapshot(t, filepath.Join(plain, "clone"))
	gs := snapshot(t, v.path("clone"))
	for _, tr := range []tree{ws, gs} {
		for p := range tr {
			if p == ".git" || strings.HasPrefix(p, ".git/") {
				delete(tr, p)
			}
		}
	}
	compareTrees(t, ws, gs, ignoreMtime|ignoreNlink)

	v.unmount(t)
	assertNoPlaintext(t, v.backing, marker)
}

// gitSession runs git in dir and returns the output of each step.
func gitSession(t *testing.T, dir, marker string) []string {
	t.Helper()
	home := t.TempDir()
	env := []string{
		"HOME=" + home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Ada", "GIT_AUTHOR_EMAIL=ada@example.com",
		"GIT_COMMITTER_NAME=Ada", "GIT_COMMITTER_EMAIL=ada@example.com",
		"GIT_AUTHOR_DATE=2020-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2020-01-02T03:04:05Z",
	}
	repo := filepath.Join(dir, "repo")
	git := func(args ...string) string {
		t.Helper()
		return runEnv(t, repo, env, "git", args...)
	}
	write := func(name, content string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(repo, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
	}

	runEnv(t, dir, env, "git", "init", "-q", "-b", "main", "repo")
	write("README.md", "# service\n"+marker+"\n", 0o644)
	write("src/main.go", "package main\n\nfunc main() {}\n", 0o644)
	write("bin/run.sh", "#!/bin/sh\nexec ./service\n", 0o755)
	write("data.bin", string(pseudoRandom(7, 100000)), 0o644)
	require.NoError(t, os.Symlink("README.md", filepath.Join(repo, "readme-link")))
	git("add", "-A")
	git("commit", "-q", "-m", "first")

	var out []string
	out = append(out, git("status", "--porcelain"), git("log", "--format=%H %s"))

	write("README.md", "# service\n"+marker+"\nsecond line\n", 0o644)
	git("rm", "-q", "data.bin")
	git("mv", "src/main.go", "src/app.go")
	write("docs/notes.txt", strings.Repeat("notes\n", 2000), 0o600)
	git("add", "-A")
	git("commit", "-q", "-m", "second")
	out = append(out,
		git("status", "--porcelain"), git("log", "--stat", "--format=%H %s"),
		git("fsck", "--full", "--strict", "--no-progress"))

	git("gc", "--quiet")
	out = append(out, git("fsck", "--full", "--strict", "--no-progress"), git("ls-files", "-s"),
		git("cat-file", "-p", "HEAD:README.md"))

	runEnv(t, dir, env, "git", "clone", "-q", "repo", "clone")
	clone := func(args ...string) string {
		t.Helper()
		return runEnv(t, filepath.Join(dir, "clone"), env, "git", args...)
	}
	out = append(out, clone("fsck", "--full", "--strict", "--no-progress"),
		clone("log", "--format=%H %s"), clone("status", "--porcelain"))
	return out
}
