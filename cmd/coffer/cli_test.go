package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Cheap Argon2id cost for tests: the cost is not what they check.
var cheapArgon2 = []string{"--argon2-time", "1", "--argon2-memory", "8", "--argon2-threads", "1"}

// fixture is a temporary directory with a key file and an empty backing
// directory.
type fixture struct {
	dir, key, backing string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, key: filepath.Join(dir, "master.key"), backing: filepath.Join(dir, "backing")}
	require.NoError(t, os.Mkdir(f.backing, 0o700))
	requireOK(t, cli(t, "keys", "create", f.keyURI()))
	return f
}

func (f *fixture) keyURI() string { return "file://" + f.key }

// init initialises the backing directory with the key file.
func (f *fixture) init(t *testing.T) result {
	t.Helper()
	r := cli(t, "init", f.backing, "--master", f.keyURI())
	requireOK(t, r)
	return r
}

// passphraseFile writes a passphrase file and returns its path.
func (f *fixture) passphraseFile(t *testing.T, name, pass string) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	require.NoError(t, os.WriteFile(p, []byte(pass+"\n"), 0o600))
	return p
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"mountt"}, `unknown command "mountt"`},
		{"unknown keys command", []string{"keys", "delete"}, `unknown command "delete"`},
		{"unknown flag", []string{"status", "--frobnicate", f.backing}, "unknown flag: --frobnicate"},
		{"unknown global flag value", []string{"--log-level", "loud", "version"}, `invalid --log-level "loud"`},
		{"bad log format", []string{"--log-format", "xml", "version"}, `invalid --log-format "xml"`},
		{"status without backing", []string{"status"}, "missing argument BACKING"},
		{"status with two args", []string{"status", "a", "b"}, `unexpected argument "b"`},
		{"mount with one arg", []string{"mount", f.backing}, "missing argument MOUNTPOINT"},
		{"unmount without arg", []string{"unmount"}, "missing argument MOUNTPOINT"},
		{"version with arg", []string{"version", "x"}, `unexpected argument "x"`},
		{"init without master", []string{"init", f.backing}, "at least one --master"},
		{"init relative key file", []string{"init", f.backing, "--master", "file://master.key"}, "names a host"},
		{"init unknown scheme", []string{"init", f.backing, "--master", "gopher://x"}, "unknown master key scheme"},
		{"init malformed URI", []string{"init", f.backing, "--master", "no scheme"}, "malformed master key URI"},
		{"init same master twice", []string{"init", f.backing, "--master", f.keyURI(), "--master", f.keyURI()},
			"given twice"},
		{"init passphrase file without passphrase master",
			[]string{"init", f.backing, "--master", f.keyURI(), "--passphrase-file", "/nonexistent"},
			"--passphrase-file needs a --master passphrase:"},
		{"init argon2 without passphrase master",
			[]string{"init", f.backing, "--master", f.keyURI(), "--argon2-time", "2"}, "--argon2-* flags need"},
		{"init bad argon2 cost", []string{"init", f.backing, "--master", "passphrase:",
			"--argon2-threads", "0"}, "invalid Argon2id cost"},
		{"init argon2 memory wrapping 32 bits", []string{"init", f.backing, "--master", "passphrase:",
			"--argon2-memory", "4194312"}, "--argon2-memory 4194312 MiB is above the limit of 4096 MiB"},
		{"keys create passphrase", []string{"keys", "create", "passphrase:"}, "need no creation step"},
		{"keys create relative", []string{"keys", "create", "file://k"}, "malformed master key URI"},
		{"mount unknown option", []string{"mount", f.backing, f.dir, "-o", "frob"}, `unknown mount option "frob"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, f.dir)
			r := cli(t, tt.args...)
			assertFailure(t, r, exitUsage, tt.want)
			assert.Empty(t, r.stdout)
			assert.Equal(t, before, snapshot(t, f.dir), "a usage error changed files")
		})
	}
}

func TestUsageErrorsInProcess(t *testing.T) {
	t.Parallel()
	// The same mapping must hold for the real binary, not only run().
	r := cliProcess(t, "status", "--no-such-flag")
	assertFailure(t, r, exitUsage, "unknown flag: --no-such-flag")
}

func TestHelpListsExitCodes(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"mount", "--help"}, {"init", "--help"}} {
		r := cli(t, args...)
		requireOK(t, r)
		assert.Contains(t, r.stdout, "Exit status:")
		assert.Contains(t, r.stdout, "2  usage error")
		assert.Contains(t, r.stdout, "Examples:")
	}
}

func TestKeysCreate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")

	r := cli(t, "keys", "create", "file://"+key)
	requireOK(t, r)
	assert.Contains(t, r.stdout, "created key file "+key)
	fi, err := os.Stat(key)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	assert.Equal(t, int64(32), fi.Size())

	before, err := os.ReadFile(key)
	require.NoError(t, err)
	r = cli(t, "keys", "create", "file://"+key)
	assertFailure(t, r, exitFailure, "file exists")
	assert.Contains(t, r.stderr, "hint: coffer never overwrites a key file")
	after, err := os.ReadFile(key)
	require.NoError(t, err)
	assert.Equal(t, before, after, "an existing key file was overwritten")

	r = cli(t, "keys", "create", "file://"+filepath.Join(dir, "missing", "k.key"))
	assertFailure(t, r, exitFailure, "failed to create key file")
	assert.Contains(t, r.stderr, "hint: create the directory first")
}

func TestInitRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, f *fixture) string // returns the BACKING argument
		want  string
		hint  string
	}{
		{"missing directory", func(t *testing.T, f *fixture) string {
			return filepath.Join(f.dir, "nope")
		}, "does not exist", "hint: create it first: mkdir -m 700"},
		{"not a directory", func(t *testing.T, f *fixture) string {
			p := filepath.Join(f.dir, "file")
			require.NoError(t, os.WriteFile(p, []byte("x"), 0o600))
			return p
		}, "is not a directory", ""},
		{"not empty", func(t *testing.T, f *fixture) string {
			require.NoError(t, os.WriteFile(filepath.Join(f.backing, "plain.txt"), []byte("x"), 0o600))
			return f.backing
		}, "backing directory is not empty", "hint: coffer encrypts only files written through the mount"},
		{"already initialised", func(t *testing.T, f *fixture) string {
			f.init(t)
			return f.backing
		}, "already initialised", "hint: init never overwrites a volume"},
		{"leftover .coffer folder", func(t *testing.T, f *fixture) string {
			require.NoError(t, os.Mkdir(filepath.Join(f.backing, ".coffer"), 0o700))
			return f.backing
		}, "another coffer init is creating the volume right now, or one was interrupted",
			"hint: if no other init is running, remove it (rmdir "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			backing := tt.setup(t, f)
			before := snapshot(t, f.dir)

			r := cli(t, "init", backing, "--master", f.keyURI())
			assertFailure(t, r, exitFailure, tt.want)
			if tt.hint != "" {
				assert.Contains(t, r.stderr, tt.hint)
			}
			assert.Equal(t, before, snapshot(t, f.dir), "init changed files")
		})
	}
}

func TestInitWrongKeyFileLeavesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	require.NoError(t, os.Chmod(f.key, 0o644))
	before := snapshot(t, f.dir)

	r := cli(t, "init", f.backing, "--master", f.keyURI())
	assertFailure(t, r, exitFailure, "group or others")
	assert.Contains(t, r.stderr, "hint: chmod 600 "+f.key)
	assert.Equal(t, before, snapshot(t, f.dir))
}

func TestInitPrintsIDs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pass := f.passphraseFile(t, "pass.txt", "correct horse")
	args := append([]string{"init", f.backing, "--master", f.keyURI(), "--master", "passphrase:",
		"--passphrase-file", pass}, cheapArgon2...)
	r := cli(t, args...)
	requireOK(t, r)

	cfg := readVolumeJSON(t, f.backing)
	assert.Contains(t, r.stdout, "initialised volume "+cfg.VolumeID)
	require.Len(t, cfg.Masters, 2)
	for _, m := range cfg.Masters {
		assert.Contains(t, r.stdout, m.ID)
	}
	assert.Equal(t, "file", cfg.Masters[0].Kind)
	assert.Equal(t, "passphrase", cfg.Masters[1].Kind)
	assert.JSONEq(t, `{"time":1,"memory_kib":8192,"threads":1}`, argon2Cost(t, cfg.Masters[1].Params),
		"the Argon2id cost flags are not recorded")
}

func TestInitSuggestsAbsoluteQuotedMount(t *testing.T) {
	f := newFixture(t)
	t.Chdir(f.dir)
	tests := []struct {
		name, arg, want string
	}{
		{"relative", "backing", "coffer mount " + f.backing + " MOUNTPOINT"},
		{"space", "my backing", "coffer mount '" + filepath.Join(f.dir, "my backing") + "' MOUNTPOINT"},
		{"quote", "it's", "coffer mount '" + filepath.Join(f.dir, "it") + `'\''s' MOUNTPOINT`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.arg != "backing" {
				require.NoError(t, os.Mkdir(tt.arg, 0o700))
			}
			r := cli(t, "init", tt.arg, "--master", f.keyURI())
			requireOK(t, r)
			assert.Contains(t, r.stdout, "mount it with: "+tt.want+"\n")
		})
	}
}

func TestStatusMatchesConfig(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	cfg := readVolumeJSON(t, f.backing)

	r := cli(t, "status", f.backing)
	requireOK(t, r)
	out := r.stdout
	assert.Contains(t, out, "volume:           "+cfg.VolumeID)
	assert.Contains(t, out, "config version:   "+strconv.Itoa(cfg.Version))
	assert.Contains(t, out, "file format:      "+strconv.Itoa(cfg.Format))
	assert.Contains(t, out, "created:          "+rfc3339(t, cfg.Created))
	assert.Contains(t, out, "ring generation:  "+strconv.Itoa(cfg.Ring.Generation))
	assert.Contains(t, out, "mounted on:       no")
	assert.Regexp(t, `names: +encrypted\n`, out)
	for _, m := range cfg.Masters {
		assert.Regexp(t, m.ID+` +`+m.Kind+` +`+rfc3339(t, m.Added)+` +`+m.URI, out)
	}
	for _, k := range cfg.Ring.Keys {
		assert.Regexp(t, strconv.FormatUint(uint64(k.ID), 10)+` +`+k.State+` +`+rfc3339(t, k.Created)+
			` +0 days`, out)
	}

	r = cli(t, "status", "--json", f.backing)
	requireOK(t, r)
	var st struct {
		VolumeID      string `json:"volume_id"`
		ConfigVersion int    `json:"config_version"`
		FormatVersion int    `json:"format_version"`
		Created       string `json:"created"`
		Generation    int    `json:"generation"`
		Masters       []struct {
			ID, Kind, URI, Added string
		} `json:"masters"`
		RingKeys []struct {
			ID      uint32 `json:"id"`
			State   string `json:"state"`
			Created string `json:"created"`
			AgeDays int    `json:"age_days"`
		} `json:"ring_keys"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	assert.Equal(t, cfg.VolumeID, st.VolumeID)
	assert.Equal(t, cfg.Version, st.ConfigVersion)
	assert.Equal(t, cfg.Format, st.FormatVersion)
	assert.Equal(t, cfg.Ring.Generation, st.Generation)
	assert.Equal(t, mustTime(t, cfg.Created), mustTime(t, st.Created))
	require.Len(t, st.Masters, len(cfg.Masters))
	for i, m := range cfg.Masters {
		assert.Equal(t, m.ID, st.Masters[i].ID)
		assert.Equal(t, m.Kind, st.Masters[i].Kind)
		assert.Equal(t, m.URI, st.Masters[i].URI)
	}
	require.Len(t, st.RingKeys, len(cfg.Ring.Keys))
	for i, k := range cfg.Ring.Keys {
		assert.Equal(t, k.ID, st.RingKeys[i].ID)
		assert.Equal(t, k.State, st.RingKeys[i].State)
		assert.Equal(t, 0, st.RingKeys[i].AgeDays)
	}
}

func TestStatusKeyAge(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	cfg, err := readConfig(f.backing)
	require.NoError(t, err)

	later := cfg.Ring.Keys[0].Created.Add(50*24*time.Hour + time.Hour)
	st := newVolumeStatus(f.backing, cfg, later)
	require.Len(t, st.RingKeys, 1)
	assert.Equal(t, 50, st.RingKeys[0].AgeDays)
}

func TestNewerConfigVersionRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	path := filepath.Join(f.backing, ".coffer", "volume.json")
	var raw map[string]any
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &raw))
	raw["version"] = 99
	b, err = json.Marshal(raw)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o600))
	mnt := filepath.Join(f.dir, "mnt")
	require.NoError(t, os.Mkdir(mnt, 0o700))
	before := snapshot(t, f.dir)

	for _, args := range [][]string{
		{"status", f.backing},
		{"mount", f.backing, mnt},
		{"init", f.backing, "--master", f.keyURI()},
	} {
		t.Run(args[0], func(t *testing.T) {
			r := cli(t, args...)
			want := "version 99 is newer"
			if args[0] == "init" {
				want = "already initialised"
			}
			assertFailure(t, r, exitFailure, want)
			if args[0] != "init" {
				assert.Contains(t, r.stderr, "hint: this volume was written by a newer coffer")
			}
			assert.Equal(t, before, snapshot(t, f.dir))
		})
	}
}

func TestStatusNotInitialised(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := cli(t, "status", f.backing)
	assertFailure(t, r, exitFailure, "not initialised")
	assert.Contains(t, r.stderr, "hint: initialise it: coffer init "+f.backing)

	r = cli(t, "status", filepath.Join(f.dir, "missing"))
	assertFailure(t, r, exitFailure, "does not exist")
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := cli(t, "version")
	requireOK(t, r)
	assert.True(t, strings.HasPrefix(r.stdout, "coffer "+version+"\n"), r.stdout)
	assert.Contains(t, r.stdout, "go      go1.")
	assert.Contains(t, r.stdout, "go-fuse ")
	assert.Contains(t, r.stdout, "tink-go ")
}

// volumeJSON is the part of .coffer/volume.json the tests check, decoded
// here independently of package keys.
type volumeJSON struct {
	Version  int    `json:"version"`
	VolumeID string `json:"volume_id"`
	Format   int    `json:"format"`
	Created  string `json:"created"`
	Masters  []struct {
		ID     string          `json:"id"`
		Kind   string          `json:"kind"`
		URI    string          `json:"uri"`
		Added  string          `json:"added"`
		Params json.RawMessage `json:"params"`
	} `json:"masters"`
	Ring struct {
		Generation int `json:"generation"`
		Keys       []struct {
			ID      uint32 `json:"id"`
			Created string `json:"created"`
			State   string `json:"state"`
		} `json:"keys"`
	} `json:"ring"`
}

func readVolumeJSON(t *testing.T, backing string) volumeJSON {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(backing, ".coffer", "volume.json"))
	require.NoError(t, err)
	var v volumeJSON
	require.NoError(t, json.Unmarshal(b, &v))
	return v
}

// argon2Cost extracts the cost fields from a passphrase master's params.
func argon2Cost(t *testing.T, params json.RawMessage) string {
	t.Helper()
	var p map[string]any
	require.NoError(t, json.Unmarshal(params, &p))
	cost := map[string]any{}
	for _, k := range []string{"time", "memory_kib", "threads"} {
		cost[k] = p[k]
	}
	b, err := json.Marshal(cost)
	require.NoError(t, err)
	return string(b)
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return tm
}

// rfc3339 reformats a config timestamp the way status prints it.
func rfc3339(t *testing.T, s string) string {
	t.Helper()
	return mustTime(t, s).Format(time.RFC3339)
}
