package keys_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	iofs "io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/keyfile"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/passphrase"
)

// testCost keeps Argon2id cheap in tests.
var testCost = passphrase.Cost{Time: 1, MemoryKiB: 64, Threads: 1}

// passSource returns a PassphraseFunc that always answers pass.
func passSource(pass string) masterkey.PassphraseFunc {
	return func(context.Context, masterkey.PassphraseRequest) (*keys.Secret, error) {
		return keys.SecretFromBytes([]byte(pass)), nil
	}
}

func passOptions(pass string) masterkey.Options {
	return masterkey.Options{Passphrase: passSource(pass), PassphraseCost: &testCost}
}

// newKeyFile creates a key file in a fresh directory and returns its URI.
func newKeyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	require.NoError(t, keyfile.Create(path))
	return keyfile.URI(path)
}

func enroll(t *testing.T, uri string, opts masterkey.Options) keys.Enrollment {
	t.Helper()
	e, err := masterkey.Enroll(context.Background(), uri, opts)
	require.NoError(t, err)
	return e
}

// treeHash hashes every path, mode and content under dir, so that a test can
// prove a directory unchanged.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(path string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		line := rel + " " + fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += " " + hex.EncodeToString(sum[:])
		}
		lines = append(lines, line)
		return nil
	})
	if errors.Is(err, iofs.ErrNotExist) {
		return "missing"
	}
	require.NoError(t, err)
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(fmtLines(lines)))
	return hex.EncodeToString(sum[:])
}

func fmtLines(lines []string) string {
	s := ""
	for _, l := range lines {
		s += l + "\n"
	}
	return s
}

func TestInitUnlock(t *testing.T) {
	fileURI := newKeyFile(t)
	tests := []struct {
		name   string
		uris   []string
		opts   masterkey.Options
		kinds  []string
		params []bool
	}{
		{name: "key file", uris: []string{fileURI}, opts: masterkey.Options{},
			kinds: []string{"file"}, params: []bool{false}},
		{name: "passphrase", uris: []string{"passphrase:"}, opts: passOptions("correct horse"),
			kinds: []string{"passphrase"}, params: []bool{true}},
		{name: "both", uris: []string{"passphrase:", fileURI}, opts: passOptions("pw"),
			kinds: []string{"passphrase", "file"}, params: []bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			backing := t.TempDir()
			var ens []keys.Enrollment
			for _, u := range tt.uris {
				ens = append(ens, enroll(t, u, tt.opts))
			}

			cfg, ring, err := keys.Init(ctx, backing, ens, keys.InitOptions{})
			require.NoError(t, err)
			require.Len(t, cfg.Masters, len(tt.uris))
			assert.Equal(t, keys.NamesEncrypted, cfg.Names, "names are encrypted by default")
			for i, m := range cfg.Masters {
				assert.Equal(t, tt.kinds[i], m.Kind)
				assert.Equal(t, tt.params[i], m.Params != nil)
			}
			assertModes(t, backing)

			read, err := keys.ReadConfig(backing)
			require.NoError(t, err)
			assertSameConfig(t, cfg, read)

			for _, m := range read.Masters {
				got, used, err := keys.Unlock(ctx, read, masterkey.Opener(ctx, tt.opts),
					keys.UnlockOptions{Only: m.ID})
				require.NoError(t, err)
				assert.Equal(t, m.ID, used.ID)
				assert.Equal(t, ring.Keys(), got.Keys())
				assertSameRing(t, ring, got)
			}
		})
	}
}

func assertModes(t *testing.T, backing string) {
	t.Helper()
	fi, err := os.Stat(filepath.Join(backing, keys.DirName))
	require.NoError(t, err)
	assert.Equal(t, iofs.ModeDir|0o700, fi.Mode())
	fi, err = os.Stat(keys.ConfigPath(backing))
	require.NoError(t, err)
	assert.Equal(t, iofs.FileMode(0o600), fi.Mode())
	entries, err := os.ReadDir(filepath.Join(backing, keys.DirName))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file may remain")
}

func assertSameConfig(t *testing.T, want, got *keys.Config) {
	t.Helper()
	wb, err := json.Marshal(want)
	require.NoError(t, err)
	gb, err := json.Marshal(got)
	require.NoError(t, err)
	assert.JSONEq(t, string(wb), string(gb))
}

// assertSameRing checks that b unwraps what a wraps, and the reverse.
func assertSameRing(t *testing.T, a, b *keys.Ring) {
	t.Helper()
	for _, pair := range [][2]*keys.Ring{{a, b}, {b, a}} {
		id, w, err := pair[0].Wrap([]byte("data key"), func(uint32) []byte { return []byte("ad") })
		require.NoError(t, err)
		got, err := pair[1].Unwrap(id, w, []byte("ad"))
		require.NoError(t, err)
		assert.Equal(t, []byte("data key"), got)
	}
}

func TestInitRefusals(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	fileURI := newKeyFile(t)

	initialised := filepath.Join(root, "initialised")
	require.NoError(t, os.Mkdir(initialised, 0o755))
	ens := []keys.Enrollment{enroll(t, fileURI, masterkey.Options{})}
	_, _, err := keys.Init(ctx, initialised, ens, keys.InitOptions{})
	require.NoError(t, err)

	emptyCoffer := filepath.Join(root, "empty-coffer")
	require.NoError(t, os.MkdirAll(filepath.Join(emptyCoffer, keys.DirName), 0o700))
	notEmpty := filepath.Join(root, "not-empty")
	require.NoError(t, os.Mkdir(notEmpty, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(notEmpty, "web.config"), []byte("x"), 0o644))
	hidden := filepath.Join(root, "hidden")
	require.NoError(t, os.Mkdir(hidden, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(hidden, ".env"), []byte("x"), 0o644))
	file := filepath.Join(root, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))

	tests := []struct {
		name    string
		backing string
		masters []keys.Enrollment
		want    error
		msg     string
	}{
		{name: "missing", backing: filepath.Join(root, "missing"), want: iofs.ErrNotExist},
		{name: "a file", backing: file, msg: "not a directory"},
		{name: "already initialised", backing: initialised, want: keys.ErrAlreadyInitialized},
		{name: "interrupted init", backing: emptyCoffer, want: keys.ErrAlreadyInitialized,
			msg: "another init is creating the volume right now, or one was interrupted"},
		{name: "not empty", backing: notEmpty, want: keys.ErrNotEmpty, msg: "web.config"},
		{name: "hidden file", backing: hidden, want: keys.ErrNotEmpty, msg: ".env"},
		{name: "no masters", backing: t.TempDir(), masters: []keys.Enrollment{}},
		{name: "nil master", backing: t.TempDir(),
			masters: []keys.Enrollment{{Kind: "file", URI: fileURI}}},
		{name: "failing master", backing: t.TempDir(),
			masters: []keys.Enrollment{{Kind: "test", URI: "test:", Master: failingMaster{}}}},
		{name: "master that cannot unseal", backing: t.TempDir(),
			masters: []keys.Enrollment{{Kind: "test", URI: "test:", Master: forgetfulMaster{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			masters := tt.masters
			if masters == nil {
				masters = []keys.Enrollment{enroll(t, fileURI, masterkey.Options{})}
			}
			before := treeHash(t, tt.backing)

			cfg, ring, err := keys.Init(ctx, tt.backing, masters, keys.InitOptions{})
			require.Error(t, err)
			assert.Nil(t, cfg)
			assert.Nil(t, ring)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
			}
			assert.Contains(t, err.Error(), tt.msg)
			assert.Equal(t, before, treeHash(t, tt.backing), "backing must be unchanged")
		})
	}
}

// failingMaster cannot seal, like an unreachable KMS.
type failingMaster struct{}

func (failingMaster) Seal(context.Context, []byte, []byte) ([]byte, error) {
	return nil, errors.New("kms unreachable")
}

func (failingMaster) Unseal(context.Context, []byte, []byte) ([]byte, error) {
	return nil, errors.New("kms unreachable")
}

// forgetfulMaster seals, but cannot unseal what it sealed.
type forgetfulMaster struct{}

func (forgetfulMaster) Seal(_ context.Context, pt, _ []byte) ([]byte, error) {
	return append([]byte{}, pt...), nil
}

func (forgetfulMaster) Unseal(context.Context, []byte, []byte) ([]byte, error) {
	return nil, keys.ErrWrongKey
}

func TestUnlockWrongKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "master.key")
	require.NoError(t, keyfile.Create(keyPath))

	tests := []struct {
		name    string
		uri     string
		enroll  masterkey.Options
		unlock  masterkey.Options
		replace bool // replace the key file with a new key before unlocking
		also    error
	}{
		{name: "wrong key file", uri: keyfile.URI(keyPath), replace: true},
		{name: "missing key file", uri: keyfile.URI(keyPath + ".gone"), also: iofs.ErrNotExist},
		{name: "wrong passphrase", uri: "passphrase:", enroll: passOptions("right"),
			unlock: passOptions("wrong")},
		{name: "empty passphrase", uri: "passphrase:", enroll: passOptions("right"),
			unlock: passOptions("")},
		{name: "no passphrase source", uri: "passphrase:", enroll: passOptions("right"),
			also: masterkey.ErrNoPassphrase},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backing := t.TempDir()
			uri := tt.uri
			if tt.also != nil && tt.uri != "passphrase:" {
				uri = keyfile.URI(keyPath)
			}
			_, _, err := keys.Init(ctx, backing, []keys.Enrollment{enroll(t, uri, tt.enroll)},
				keys.InitOptions{})
			require.NoError(t, err)
			cfg, err := keys.ReadConfig(backing)
			require.NoError(t, err)
			if tt.also != nil && tt.uri != "passphrase:" {
				cfg.Masters[0].URI = tt.uri // the key file moved away
			}
			if tt.replace {
				require.NoError(t, os.Remove(keyPath))
				require.NoError(t, keyfile.Create(keyPath))
			}
			before := treeHash(t, backing)

			ring, used, err := keys.Unlock(ctx, cfg, masterkey.Opener(ctx, tt.unlock),
				keys.UnlockOptions{})
			require.ErrorIs(t, err, keys.ErrWrongKey)
			if tt.also != nil {
				assert.ErrorIs(t, err, tt.also)
			}
			var ue *keys.UnlockError
			require.ErrorAs(t, err, &ue)
			assert.Len(t, ue.Attempts, 1)
			assert.Nil(t, ring)
			assert.Zero(t, used)
			assert.Equal(t, before, treeHash(t, backing), "unlock must not change backing")
		})
	}
}

func TestUnlockFallsBackInOrder(t *testing.T) {
	ctx := context.Background()
	backing := t.TempDir()
	opts := passOptions("pw")
	ens := []keys.Enrollment{enroll(t, "passphrase:", opts), enroll(t, newKeyFile(t), opts)}
	cfg, _, err := keys.Init(ctx, backing, ens, keys.InitOptions{})
	require.NoError(t, err)

	var failed []string
	_, used, err := keys.Unlock(ctx, cfg, masterkey.Opener(ctx, passOptions("bad")),
		keys.UnlockOptions{Failed: func(m keys.MasterEntry, err error) {
			assert.ErrorIs(t, err, keys.ErrWrongKey)
			failed = append(failed, m.ID)
		}})
	require.NoError(t, err, "the key file must unlock after the passphrase fails")
	assert.Equal(t, cfg.Masters[1].ID, used.ID)
	assert.Equal(t, []string{cfg.Masters[0].ID}, failed, "Failed reports the passphrase once")

	_, _, err = keys.Unlock(ctx, cfg, masterkey.Opener(ctx, passOptions("bad")),
		keys.UnlockOptions{Only: cfg.Masters[0].ID})
	require.ErrorIs(t, err, keys.ErrWrongKey, "Only must not fall back")

	_, _, err = keys.Unlock(ctx, cfg, masterkey.Opener(ctx, opts),
		keys.UnlockOptions{Only: "00000000"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), cfg.Masters[0].ID, "the error lists known IDs")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = keys.Unlock(cancelled, cfg, masterkey.Opener(ctx, opts), keys.UnlockOptions{})
	require.ErrorIs(t, err, context.Canceled)
}

// TestSealedCopyBinding moves sealed ring copies between master entries and
// volumes that share one key file: the associated data must refuse them.
func TestSealedCopyBinding(t *testing.T) {
	ctx := context.Background()
	uri := newKeyFile(t)
	// A second name for the same key: a config may not list one entry
	// twice.
	link := strings.TrimPrefix(uri, "file://") + ".link"
	require.NoError(t, os.Link(strings.TrimPrefix(uri, "file://"), link))
	open := masterkey.Opener(ctx, masterkey.Options{})
	ens := func() []keys.Enrollment {
		return []keys.Enrollment{enroll(t, uri, masterkey.Options{}),
			enroll(t, "file://"+link, masterkey.Options{})}
	}
	a, _, err := keys.Init(ctx, t.TempDir(), ens(), keys.InitOptions{})
	require.NoError(t, err)
	b, _, err := keys.Init(ctx, t.TempDir(), ens(), keys.InitOptions{})
	require.NoError(t, err)
	a0, a1 := a.Masters[0].ID, a.Masters[1].ID

	tests := []struct {
		name string
		edit func(c *keys.Config) string // returns the master ID to try
	}{
		{name: "copy swapped between masters", edit: func(c *keys.Config) string {
			c.Ring.Sealed[a0], c.Ring.Sealed[a1] = c.Ring.Sealed[a1], c.Ring.Sealed[a0]
			return a0
		}},
		{name: "copy from another volume", edit: func(c *keys.Config) string {
			// Same master ID in both volumes, so only the volume ID differs.
			c.Ring.Sealed[a0] = sealedAs(t, b, a0)
			return a0
		}},
		{name: "volume ID changed", edit: func(c *keys.Config) string {
			c.VolumeID = b.VolumeID
			return a0
		}},
		{name: "master ID renamed", edit: func(c *keys.Config) string {
			c.Masters[0].ID = "0badc0de"
			c.Ring.Sealed["0badc0de"] = c.Ring.Sealed[a0]
			delete(c.Ring.Sealed, a0)
			return "0badc0de"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cloneConfig(t, a)
			only := tt.edit(c)
			_, _, err := keys.Unlock(ctx, c, open, keys.UnlockOptions{Only: only})
			require.ErrorIs(t, err, keys.ErrWrongKey)
		})
	}

	_, _, err = keys.Unlock(ctx, cloneConfig(t, a), open, keys.UnlockOptions{Only: a0})
	require.NoError(t, err, "the unedited config must unlock")
}

// sealedAs returns the copy of volume c's ring sealed for its first master,
// after renaming that master to id in c (so that AD differs only in volume).
func sealedAs(t *testing.T, c *keys.Config, id string) []byte {
	t.Helper()
	ctx := context.Background()
	c = cloneConfig(t, c)
	old := c.Masters[0].ID
	// Reseal b's ring for master ID id: unlock it, then seal it under the
	// same key file with the AD of volume b and master id.
	ring, _, err := keys.Unlock(ctx, c, masterkey.Opener(ctx, masterkey.Options{}),
		keys.UnlockOptions{Only: old})
	require.NoError(t, err)
	m, err := masterkey.Open(ctx, c.Masters[0], masterkey.Options{})
	require.NoError(t, err)
	sealed, err := keys.SealRing(ctx, ring, c.VolumeID, id, m)
	require.NoError(t, err)
	return sealed
}

func cloneConfig(t *testing.T, c *keys.Config) *keys.Config {
	t.Helper()
	b, err := json.Marshal(c)
	require.NoError(t, err)
	var out keys.Config
	require.NoError(t, json.Unmarshal(b, &out))
	return &out
}

func TestInitPlaintextNames(t *testing.T) {
	backing := t.TempDir()
	uri := newKeyFile(t)
	cfg, _, err := keys.Init(context.Background(), backing,
		[]keys.Enrollment{enroll(t, uri, masterkey.Options{})}, keys.InitOptions{PlaintextNames: true})
	require.NoError(t, err)
	read, err := keys.ReadConfig(backing)
	require.NoError(t, err)
	assert.Equal(t, keys.NamesPlaintext, read.Names)
	assert.False(t, read.EncryptedNames())
	assert.Equal(t, cfg.Names, read.Names)
}
