package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

// cliProcessStdin runs coffer as a process with stdin piped in.
func cliProcessStdin(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// writeThrough writes name through the mount.
func (f *mountFixture) writeThrough(t *testing.T, name, data string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, name), []byte(data), 0o600))
}

// readThrough reads name through the mount.
func (f *mountFixture) readThrough(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.mnt, name))
	require.NoError(t, err)
	return string(b)
}

func (f *mountFixture) unmount(t *testing.T) {
	t.Helper()
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	require.False(t, isMounted(t, f.mnt))
}

// recoveryNew runs "coffer recovery new --out" and returns the key file.
func (f *mountFixture) recoveryNew(t *testing.T, extra ...string) string {
	t.Helper()
	out := filepath.Join(f.dir, "recovery.txt")
	r := cli(t, append([]string{"recovery", "new", f.backing, "--out", out}, extra...)...)
	requireOK(t, r)
	assert.Contains(t, r.stdout, "wrote the private recovery key to "+out)
	return out
}

func TestMountWithEachOfTwoMasters(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	first := f.masterID(t, f.keyURI())
	secondURI := f.newKey(t, "second.key")
	requireOK(t, cli(t, "master", "add", f.backing, secondURI))
	second := f.masterID(t, secondURI)

	requireOK(t, f.mount(t, "--master", first))
	f.writeThrough(t, "a.txt", "written under the first key")
	f.unmount(t)
	requireOK(t, f.mount(t, "--master", second))
	assert.Equal(t, "written under the first key", f.readThrough(t, "a.txt"))
	f.unmount(t)

	// Lose the first key file: mount finds the second by itself.
	require.NoError(t, os.Remove(f.key))
	requireOK(t, f.mount(t))
	assert.Equal(t, "written under the first key", f.readThrough(t, "a.txt"))
	f.unmount(t)

	list := f.masters(t)
	require.Len(t, list, 2)
	require.NotNil(t, list[0].LastUsed)
	require.NotNil(t, list[1].LastUsed)
	assert.False(t, list[1].LastUsed.Before(*list[0].LastUsed), "the second key was used last")
	r := cli(t, "master", "list", f.backing)
	requireOK(t, r)
	assert.NotContains(t, strings.Split(r.stdout, "\n")[1], " - ", "last use not shown")
}

func TestRemoveWhileMounted(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	first := f.masterID(t, f.keyURI())
	secondURI := f.newKey(t, "second.key")
	requireOK(t, cli(t, "master", "add", f.backing, secondURI))

	requireOK(t, f.mount(t, "--master", first))
	requireOK(t, cli(t, "master", "remove", f.backing, first))
	f.writeThrough(t, "after-remove.txt", "the mount holds its ring")
	assert.Equal(t, "the mount holds its ring", f.readThrough(t, "after-remove.txt"))
	f.unmount(t)

	r := f.mount(t, "--master", first)
	assertFailure(t, r, exitFailure, "volume has no master key "+first)
	r = f.mount(t, "--master", f.keyURI())
	assertFailure(t, r, exitFailure, "volume has no master key "+f.keyURI())
	assert.False(t, isMounted(t, f.mnt))

	// Hide the second key: the first, still on disk, no longer unlocks.
	second := filepath.Join(f.dir, "second.key")
	require.NoError(t, os.Rename(second, second+".away"))
	assertFailure(t, f.mount(t), exitFailure, "no master key unlocked the volume")
	require.NoError(t, os.Rename(second+".away", second))
	requireOK(t, f.mount(t))
	assert.Equal(t, "the mount holds its ring", f.readThrough(t, "after-remove.txt"))
}

var keyLine = regexp.MustCompile(`(?m)^    ([0-9A-Z]{5}(-[0-9A-Z]{5}){6})$`)

func TestRecoveryKeyMount(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	f.writeThrough(t, "data.txt", "recover me")
	f.unmount(t)

	// Printed on stdout without --out.
	r := cli(t, "recovery", "new", f.backing)
	requireOK(t, r)
	m := keyLine.FindAllStringSubmatch(r.stdout, -1)
	require.Len(t, m, 2, "stdout: %s", r.stdout)
	printed := m[0][1] + "\n" + m[1][1]
	assert.Contains(t, r.stdout, "--recovery-key -")

	// And into a file with --out.
	file := f.recoveryNew(t)
	fi, err := os.Stat(file)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	assert.Len(t, f.masters(t), 3)

	// Every other master key gone: both recovery keys unlock.
	require.NoError(t, os.Remove(f.key))
	requireOK(t, f.mount(t, "--recovery-key", file))
	assert.Equal(t, "recover me", f.readThrough(t, "data.txt"))
	f.unmount(t)

	r = cliProcessStdin(t, strings.ToLower(printed)+"\n", "mount", f.backing, f.mnt,
		"--log-file", f.log, "--recovery-key", "-")
	requireOK(t, r)
	assert.Equal(t, "recover me", f.readThrough(t, "data.txt"))
	f.unmount(t)
	logData, err := os.ReadFile(f.log)
	require.NoError(t, err)
	for _, g := range strings.FieldsFunc(printed, func(r rune) bool { return r == '-' || r == '\n' }) {
		assert.NotContains(t, strings.ToUpper(string(logData)), g, "key material in the log")
	}
}

func TestRecoveryKeyTypo(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	file := f.recoveryNew(t)
	text, err := os.ReadFile(file)
	require.NoError(t, err)

	// Change the second character of the third group.
	lines := strings.Split(string(text), "\n")
	grps := strings.Split(lines[1], "-")
	c := grps[2][1]
	repl := byte('7')
	if c == repl {
		repl = '8'
	}
	grps[2] = grps[2][:1] + string(repl) + grps[2][2:]
	lines[1] = strings.Join(grps, "-")
	typo := filepath.Join(f.dir, "typo.txt")
	require.NoError(t, os.WriteFile(typo, []byte(strings.Join(lines, "\n")), 0o600))
	before := snapshot(t, f.backing)

	r := f.mount(t, "--recovery-key", typo)
	assertFailure(t, r, exitFailure, "recovery key group 3 is mistyped")
	assert.Contains(t, r.stderr, "hint: check that group against the printed key")
	assert.NotContains(t, r.stderr, grps[2])
	assert.False(t, isMounted(t, f.mnt))

	r = cliProcessStdin(t, strings.Join(lines[1:], " "), "mount", f.backing, f.mnt,
		"--log-file", f.log, "--recovery-key", "-")
	assertFailure(t, r, exitFailure, "recovery key group 3 is mistyped")
	r = cliStdin(t, strings.Join(lines[1:], " "), "master", "add", f.backing,
		f.newKey(t, "new.key"), "--recovery-key", "-")
	assertFailure(t, r, exitFailure, "recovery key group 3 is mistyped")
	assert.Equal(t, before, snapshot(t, f.backing))
}

func TestBackupRestoreMount(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	f.writeThrough(t, "data.txt", "survives a lost .coffer")
	f.unmount(t)

	backup := filepath.Join(f.dir, "volume.backup")
	r := cli(t, "backup", f.backing, backup)
	requireOK(t, r)
	assert.Regexp(t, `^wrote backup of volume [0-9a-f]{32} \(1 master keys, ring generation 1\) to `,
		r.stdout)
	fi, err := os.Stat(backup)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	b, err := os.ReadFile(backup)
	require.NoError(t, err)
	key, err := os.ReadFile(f.key)
	require.NoError(t, err)
	assert.False(t, bytes.Contains(b, key), "the backup holds the key file")

	require.NoError(t, os.RemoveAll(filepath.Join(f.backing, keys.DirName)))
	assertFailure(t, f.mount(t), exitFailure, "not initialised")

	r = cli(t, "restore", f.backing, backup)
	requireOK(t, r)
	assert.Contains(t, r.stdout, "restored volume ")
	requireOK(t, f.mount(t))
	assert.Equal(t, "survives a lost .coffer", f.readThrough(t, "data.txt"))
	f.unmount(t)

	// A damaged volume.json (docs/recovery.md, same section): nothing to
	// compare the backup with, so --force is needed (breaker4 F9).
	cfg := f.config(t)
	require.NoError(t, os.WriteFile(keys.ConfigPath(f.backing), cfg[:200], 0o600))
	assertFailure(t, f.mount(t), exitFailure, "malformed data")
	r = cli(t, "restore", f.backing, backup)
	assertFailure(t, r, exitFailure, "backup cannot be compared with the volume config: it "+
		"cannot be read (the backup holds ring generation 1)")
	assert.Contains(t, r.stderr, "then restore with --force")
	assert.Equal(t, cfg[:200], f.config(t), "a refused restore changed the config")
	r = cli(t, "restore", f.backing, backup, "--force")
	requireOK(t, r)
	assert.Contains(t, r.stdout, "the unreadable config was moved to ")
	requireOK(t, f.mount(t))
	assert.Equal(t, "survives a lost .coffer", f.readThrough(t, "data.txt"))
}

func TestBackupRestoreRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	backup := filepath.Join(f.dir, "volume.backup")
	requireOK(t, cli(t, "backup", f.backing, backup))
	other := newFixture(t)
	other.init(t)
	requireOK(t, cli(t, "master", "add", f.backing, f.newKey(t, "second.key")))
	notBackup := filepath.Join(f.dir, "not-a-backup.json")
	require.NoError(t, os.WriteFile(notBackup, f.config(t), 0o600))

	tests := []struct {
		name string
		args []string
		code int
		want string
		hint string
	}{
		{"backup exists", []string{"backup", f.backing, backup}, exitFailure, "already exists",
			"hint: coffer never overwrites a file"},
		{"backup inside backing", []string{"backup", f.backing, filepath.Join(f.backing, "b")},
			exitUsage, "is inside the backing directory", ""},
		{"restore older backup", []string{"restore", f.backing, backup}, exitFailure,
			"backup is older than the volume config", "hint: take a backup of the current config first"},
		{"restore another volume's backup", []string{"restore", other.backing, backup}, exitFailure,
			"backup belongs to another volume", "hint: use the backup of this volume"},
		{"restore another volume's backup, forced", []string{"restore", other.backing, backup,
			"--force"}, exitFailure, "backup belongs to another volume", ""},
		{"restore a volume.json", []string{"restore", f.backing, notBackup}, exitFailure,
			"malformed data", ""},
		{"restore missing file", []string{"restore", f.backing, filepath.Join(f.dir, "nope")},
			exitFailure, "no such file or directory", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, filepath.Dir(f.dir))
			r := cli(t, tt.args...)
			assertFailure(t, r, tt.code, tt.want)
			if tt.hint != "" {
				assert.Contains(t, r.stderr, tt.hint)
			}
			assert.Equal(t, before, snapshot(t, filepath.Dir(f.dir)))
		})
	}

	r := cli(t, "restore", f.backing, backup, "--force")
	requireOK(t, r)
	assert.Contains(t, r.stdout, "ring generation 1, was 1")
	assert.Contains(t, r.stdout, "the replaced config was kept as "+keys.ConfigPath(f.backing)+
		".replaced-")
	assert.Len(t, f.masters(t), 1)
}

// TestProcedureLostHostKey runs the procedure of docs/recovery.md, "The
// host's master key is lost".
func TestProcedureLostHostKey(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	oldID := f.masterID(t, f.keyURI())
	recoveryFile := f.recoveryNew(t)
	requireOK(t, f.mount(t))
	f.writeThrough(t, "data.txt", "still here")
	f.unmount(t)
	require.NoError(t, os.Remove(f.key)) // the disaster

	// 1. Mount with the recovery key to check it works.
	requireOK(t, f.mount(t, "--recovery-key", recoveryFile))
	assert.Equal(t, "still here", f.readThrough(t, "data.txt"))
	f.unmount(t)
	// 2. Make a new host key and add it, unlocking with the recovery key.
	newKey := f.newKey(t, "new-host.key")
	requireOK(t, cli(t, "master", "add", f.backing, newKey, "--recovery-key", recoveryFile))
	// 3. Remove the lost key.
	requireOK(t, cli(t, "master", "remove", f.backing, oldID))
	// 4. Take a new backup.
	requireOK(t, cli(t, "backup", f.backing, filepath.Join(f.dir, "after.backup")))

	requireOK(t, f.mount(t))
	assert.Equal(t, "still here", f.readThrough(t, "data.txt"))
	list := f.masters(t)
	require.Len(t, list, 2)
	assert.Equal(t, []string{"recovery", "file"}, []string{list[0].Kind, list[1].Kind})
}

// TestProcedureRolledBackCoffer runs the procedure of docs/recovery.md, "The
// backing directory was restored from an old copy".
func TestProcedureRolledBackCoffer(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	old := filepath.Join(f.dir, "old-coffer")
	require.NoError(t, exec.Command("cp", "-a", filepath.Join(f.backing, keys.DirName), old).Run())

	// Later: a second key, and a backup of the config.
	second := f.newKey(t, "second.key")
	requireOK(t, cli(t, "master", "add", f.backing, second))
	backup := filepath.Join(f.dir, "volume.backup")
	requireOK(t, cli(t, "backup", f.backing, backup))

	// The backing directory comes back from an old copy.
	require.NoError(t, os.RemoveAll(filepath.Join(f.backing, keys.DirName)))
	require.NoError(t, os.Rename(old, filepath.Join(f.backing, keys.DirName)))
	require.NoError(t, os.Remove(f.key)) // and only the second key is at hand
	assertFailure(t, f.mount(t), exitFailure, "no master key unlocked the volume")

	// 1. restore refuses, naming the master keys on each side.
	r := cli(t, "restore", f.backing, backup)
	assertFailure(t, r, exitFailure, "the backup lists master keys")
	// 2. The backup is the newer: restore with --force.
	requireOK(t, cli(t, "restore", f.backing, backup, "--force"))
	requireOK(t, f.mount(t))
}

func TestRecoveryKeyTypedOnTerminal(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	file := f.recoveryNew(t)
	text, err := os.ReadFile(file)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	typed := strings.ReplaceAll(lines[1]+"-"+lines[2], "-", " ")
	require.NoError(t, os.Remove(f.key))
	master, tty := openPTY(t)

	typeAhead(t, master, typed)
	r := processTTY(t, tty, "mount", f.backing, f.mnt, "--log-file", f.log, "--recovery-key", "-")
	requireOK(t, r)
	assert.True(t, isMounted(t, f.mnt))
	term := readTerminal(t, master)
	assert.Contains(t, term, "Recovery key (14 groups of 5 characters): ")
	assert.NotContains(t, r.stderr, "Recovery key", "the prompt goes to the terminal")
	logData, err := os.ReadFile(f.log)
	require.NoError(t, err)
	assert.NotContains(t, string(logData)+r.stdout+r.stderr, lines[1][:11])
}
