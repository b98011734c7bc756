package keyfile

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

func TestParseURI(t *testing.T) {
	tests := []struct {
		name    string
		uri     string
		want    string
		wantErr string
	}{
		{name: "absolute", uri: "file:///etc/coffer/master.key", want: "/etc/coffer/master.key"},
		{name: "escaped space", uri: "file:///srv/my%20keys/k", want: "/srv/my keys/k"},
		{name: "relative", uri: "file://master.key", wantErr: "names a host"},
		{name: "relative opaque", uri: "file:master.key", wantErr: "must start with file://"},
		{name: "localhost", uri: "file://localhost/etc/k", wantErr: "names a host"},
		{name: "user", uri: "file://u@/etc/k", wantErr: "names a host"},
		{name: "dot-dot", uri: "file:///etc/../k", wantErr: "clean"},
		{name: "double slash", uri: "file:////etc//k", wantErr: "clean"},
		{name: "trailing slash", uri: "file:///etc/k/", wantErr: "clean"},
		{name: "root", uri: "file:///", wantErr: "clean"},
		{name: "empty path", uri: "file://", wantErr: "absolute"},
		{name: "query", uri: "file:///etc/k?x=1", wantErr: "query"},
		{name: "empty query", uri: "file:///etc/k?", wantErr: "query"},
		{name: "fragment", uri: "file:///etc/k#x", wantErr: "fragment"},
		{name: "empty fragment", uri: "file:///etc/k#", wantErr: "fragment"},
		{name: "NUL", uri: "file:///etc/k%00", wantErr: "NUL"},
		{name: "bad escape", uri: "file:///etc/%zz", wantErr: "malformed"},
		{name: "other scheme", uri: "http:///etc/k", wantErr: "must start with file://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseURI(tt.uri)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			back, err := ParseURI(URI(got))
			require.NoError(t, err)
			assert.Equal(t, got, back, "URI must round-trip")
		})
	}
}

func TestCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")

	require.NoError(t, Create(path))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode())
	assert.Equal(t, int64(Size), fi.Size())
	first, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.NotEqual(t, make([]byte, Size), first)

	require.Error(t, Create(path), "Create must refuse to overwrite")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, first, after)

	other := filepath.Join(dir, "other.key")
	require.NoError(t, Create(other))
	second, err := os.ReadFile(other)
	require.NoError(t, err)
	assert.NotEqual(t, first, second)

	require.Error(t, Create(filepath.Join(dir, "missing", "k")))
}

func TestLoadRefusals(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, bytes.Repeat([]byte{7}, size), 0o600))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	good := write("good", Size, 0o600)
	require.NoError(t, os.Symlink(good, filepath.Join(dir, "link")))
	require.NoError(t, os.Symlink(write("open-target", Size, 0o644), filepath.Join(dir, "badlink")))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "dir"), 0o700))

	tests := []struct {
		name    string
		path    string
		wantErr string
		perm    bool
	}{
		{name: "0600", path: good},
		{name: "0400", path: write("ro", Size, 0o400)},
		{name: "symlink to 0600", path: filepath.Join(dir, "link")},
		{name: "group readable", path: write("g", Size, 0o640), wantErr: "chmod 600", perm: true},
		{name: "other readable", path: write("o", Size, 0o604), wantErr: "chmod 600", perm: true},
		{name: "group writable", path: write("gw", Size, 0o620), wantErr: "chmod 600", perm: true},
		{name: "group executable", path: write("gx", Size, 0o610), wantErr: "0610", perm: true},
		{name: "symlink to 0644", path: filepath.Join(dir, "badlink"), wantErr: "chmod 600",
			perm: true},
		{name: "31 bytes", path: write("short", Size-1, 0o600), wantErr: "31 bytes"},
		{name: "33 bytes", path: write("long", Size+1, 0o600), wantErr: "33 bytes"},
		{name: "empty", path: write("empty", 0, 0o600), wantErr: "0 bytes"},
		{name: "directory", path: filepath.Join(dir, "dir"), wantErr: "directory"},
		{name: "device", path: "/dev/null", wantErr: "not a regular file"},
		{name: "missing", path: filepath.Join(dir, "missing"), wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := Load(tt.path)
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, bytes.Repeat([]byte{7}, Size), key.InsecureBytes())
				key.Wipe()
				return
			}
			require.Error(t, err)
			assert.Nil(t, key)
			assert.Contains(t, err.Error(), tt.wantErr)
			var pe *PermissionError
			assert.Equal(t, tt.perm, errors.As(err, &pe))
			assert.NotErrorIs(t, err, keys.ErrWrongKey)
		})
	}
}

// TestDeriveKeyKnownAnswer checks the HKDF step against a value computed
// independently with Python's hmac module, following RFC 5869 by hand:
//
//	prk = HMAC-SHA256(key=32 zero bytes, msg=bytes(range(32)))
//	okm = HMAC-SHA256(key=prk, msg=b"coffer keyfile v1" + b"\x01")
func TestDeriveKeyKnownAnswer(t *testing.T) {
	ikm := make([]byte, Size)
	for i := range ikm {
		ikm[i] = byte(i)
	}
	got, err := deriveKey(keys.SecretFromBytes(ikm))
	require.NoError(t, err)
	assert.Equal(t, "2f627a5f446ac8c63edb07721fae2ad64bca5f9673587587724d3ad7c09258ca",
		hex.EncodeToString(got.InsecureBytes()))
}

func TestSealUnseal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pathA, pathB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	require.NoError(t, Create(pathA))
	require.NoError(t, Create(pathB))
	a, err := Open(pathA)
	require.NoError(t, err)
	a2, err := Open(pathA)
	require.NoError(t, err)
	b, err := Open(pathB)
	require.NoError(t, err)

	sealed, err := a.Seal(ctx, []byte("ring payload"), []byte("ad"))
	require.NoError(t, err)
	assert.Len(t, sealed, len("ring payload")+40)
	again, err := a.Seal(ctx, []byte("ring payload"), []byte("ad"))
	require.NoError(t, err)
	assert.NotEqual(t, sealed, again, "nonces must be random")

	flipped := bytes.Clone(sealed)
	flipped[30] ^= 1
	tests := []struct {
		name   string
		master keys.Master
		sealed []byte
		ad     string
		ok     bool
	}{
		{name: "same key", master: a2, sealed: sealed, ad: "ad", ok: true},
		{name: "other key", master: b, sealed: sealed, ad: "ad"},
		{name: "wrong AD", master: a2, sealed: sealed, ad: "ae"},
		{name: "flipped bit", master: a2, sealed: flipped, ad: "ad"},
		{name: "truncated", master: a2, sealed: sealed[:len(sealed)-1], ad: "ad"},
		{name: "too short", master: a2, sealed: sealed[:39], ad: "ad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.master.Unseal(ctx, tt.sealed, []byte(tt.ad))
			if tt.ok {
				require.NoError(t, err)
				assert.Equal(t, []byte("ring payload"), got)
				return
			}
			require.ErrorIs(t, err, keys.ErrWrongKey)
			assert.Nil(t, got)
		})
	}
}
