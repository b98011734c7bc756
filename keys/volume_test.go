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
		id, w, err := pair[0].Wrap([]byte("data key"), []byte("ad"))
		require.NoError(t, err)
		got, err := pair[1].Unwrap(id, w, []byte("ad"))
		require.NoError(t, err)
		assert.Equal(t, []byte("data key"), got)
	}
}
