//go:build linux

package systemdcreds

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

const volumeID = "0123456789abcdef"

// ad is associated data as coffer builds it: label, volume ID, master ID.
func ad(volume, master string) []byte {
	return append([]byte(adPrefix+volume), master...)
}

// requireSystemdCreds skips the test when systemd-creds cannot run here,
// or fails it when the CI environment variable is set.
func requireSystemdCreds(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath(program)
	ok := err == nil && os.Geteuid() == 0
	if ok {
		return
	}
	msg := "systemd-creds with the host key needs the systemd-creds binary and root"
	if os.Getenv("CI") != "" {
		t.Fatalf("%s: %v", msg, err)
	}
	t.Skipf("%s: %v", msg, err)
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		name, uri, want string // want empty: malformed
	}{
		{name: "host", uri: "systemd-creds:host", want: "systemd-creds:host"},
		{name: "tpm2", uri: "systemd-creds:tpm2", want: "systemd-creds:tpm2"},
		{name: "both", uri: "systemd-creds:host+tpm2", want: "systemd-creds:host+tpm2"},
		{name: "upper case", uri: "SYSTEMD-CREDS:Host", want: "systemd-creds:host"},
		{name: "empty", uri: "systemd-creds:"},
		{name: "other order", uri: "systemd-creds:tpm2+host"},
		{name: "auto", uri: "systemd-creds:auto"},
		{name: "query", uri: "systemd-creds:host?x=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := masterkey.Parse(tt.uri)
			if tt.want == "" {
				require.ErrorIs(t, err, masterkey.ErrMalformed)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, Scheme, ref.Kind)
			assert.Equal(t, tt.want, ref.URI)
		})
	}
}

// enrollHost enrolls systemd-creds:host and returns its config entry and
// master.
func enrollHost(t *testing.T) (keys.MasterEntry, keys.Master) {
	t.Helper()
	requireSystemdCreds(t)
	e, err := masterkey.Enroll(context.Background(), "systemd-creds:host", masterkey.Options{})
	require.NoError(t, err)
	assert.Nil(t, e.Params)
	return keys.MasterEntry{ID: "m1", Kind: e.Kind, URI: e.URI, Params: e.Params}, e.Master
}

func TestRoundTripHost(t *testing.T) {
	ctx := context.Background()
	entry, enrolled := enrollHost(t)
	ring := []byte("the ring payload")

	sealed, err := enrolled.Seal(ctx, ring, ad(volumeID, "m1"))
	require.NoError(t, err)
	assert.NotContains(t, string(sealed), string(ring))

	m, err := masterkey.Open(ctx, entry, masterkey.Options{})
	require.NoError(t, err)
	got, err := m.Unseal(ctx, sealed, ad(volumeID, "m1"))
	require.NoError(t, err)
	assert.Equal(t, ring, got)

	again, err := m.Seal(ctx, ring, ad(volumeID, "m1"))
	require.NoError(t, err)
	assert.NotEqual(t, sealed[headerSize:], again[headerSize:], "a new KEK for each seal")
}

// TestBound checks that a sealed copy opens only for its own volume and
// master: systemd-creds refuses the credential name, and the AEAD the
// associated data.
func TestBound(t *testing.T) {
	ctx := context.Background()
	_, m := enrollHost(t)
	sealed, err := m.Seal(ctx, []byte("ring"), ad(volumeID, "m1"))
	require.NoError(t, err)

	for name, other := range map[string][]byte{
		"other master": ad(volumeID, "m2"),
		"other volume": ad("fedcba9876543210", "m1"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := m.Unseal(ctx, sealed, other)
			require.ErrorIs(t, err, keys.ErrWrongKey)
			assert.Contains(t, err.Error(), "does not match")
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestTampered(t *testing.T) {
	ctx := context.Background()
	_, m := enrollHost(t)
	sealed, err := m.Seal(ctx, []byte("ring"), ad(volumeID, "m1"))
	require.NoError(t, err)
	n := int(sealed[1])<<8 | int(sealed[2])

	tests := []struct {
		name   string
		change func(b []byte) []byte
	}{
		{name: "version", change: func(b []byte) []byte { b[0] = 2; return b }},
		{name: "credential", change: func(b []byte) []byte { b[headerSize+n/2] ^= 1; return b }},
		{name: "credential length", change: func(b []byte) []byte { b[2]--; return b }},
		{name: "ring ciphertext", change: func(b []byte) []byte { b[len(b)-20] ^= 1; return b }},
		{name: "ring tag", change: func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		{name: "truncated", change: func(b []byte) []byte { return b[:headerSize+n] }},
		{name: "empty", change: func(b []byte) []byte { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := tt.change(append([]byte(nil), sealed...))
			_, err := m.Unseal(ctx, bad, ad(volumeID, "m1"))
			require.ErrorIs(t, err, keys.ErrWrongKey)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

// TestNoSecretOnCommandLine puts a wrapper first in PATH that records its
// arguments and runs the real systemd-creds: the arguments must be exactly
// the options and the name, the key passing through the pipes only.
func TestNoSecretOnCommandLine(t *testing.T) {
	requireSystemdCreds(t)
	real, err := exec.LookPath(program)
	require.NoError(t, err)
	dir := t.TempDir()
	log := filepath.Join(dir, "argv.log")
	script := "#!/bin/sh\necho \"$*\" >> " + log + "\nexec " + real + " \"$@\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, program), []byte(script), 0o700))
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))

	ctx := context.Background()
	_, m := enrollHost(t)
	sealed, err := m.Seal(ctx, []byte("ring"), ad(volumeID, "m1"))
	require.NoError(t, err)
	_, err = m.Unseal(ctx, sealed, ad(volumeID, "m1"))
	require.NoError(t, err)

	argv, err := os.ReadFile(log)
	require.NoError(t, err)
	name := "coffer-" + hex.EncodeToString([]byte(volumeID)) + "-m1"
	assert.Equal(t, "encrypt --with-key=host --name="+name+" - -\n"+
		"decrypt --name="+name+" - -\n", string(argv))
}

// TestTPMKeys checks the TPM-bound kinds: on a machine without a TPM they
// fail at once with one line that says so; with a TPM they round-trip.
func TestTPMKeys(t *testing.T) {
	requireSystemdCreds(t)
	_, statErr := os.Stat(tpmDevice)
	for _, uri := range []string{"systemd-creds:tpm2", "systemd-creds:host+tpm2"} {
		t.Run(uri, func(t *testing.T) {
			ctx := context.Background()
			e, err := masterkey.Enroll(ctx, uri, masterkey.Options{})
			if statErr == nil {
				require.NoError(t, err)
				sealed, err := e.Master.Seal(ctx, []byte("ring"), ad(volumeID, "m1"))
				require.NoError(t, err)
				got, err := e.Master.Unseal(ctx, sealed, ad(volumeID, "m1"))
				require.NoError(t, err)
				assert.Equal(t, []byte("ring"), got)
				return
			}
			require.ErrorIs(t, err, ErrNoTPM)
			assert.Contains(t, err.Error(), "needs a TPM 2.0 and this machine has none")
			assert.NotContains(t, err.Error(), "\n")

			entry := keys.MasterEntry{ID: "m1", Kind: Scheme, URI: uri}
			_, err = masterkey.Open(ctx, entry, masterkey.Options{})
			require.ErrorIs(t, err, ErrNoTPM)
		})
	}
}

func TestNoBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := masterkey.Enroll(context.Background(), "systemd-creds:host", masterkey.Options{})
	require.ErrorIs(t, err, ErrNoBinary)
	assert.False(t, strings.Contains(err.Error(), "\n"))
}

func TestParams(t *testing.T) {
	entry := keys.MasterEntry{ID: "m1", Kind: Scheme, URI: "systemd-creds:host",
		Params: []byte(`{"x":1}`)}
	_, err := masterkey.Open(context.Background(), entry, masterkey.Options{})
	require.ErrorIs(t, err, keys.ErrMalformed)
}

func TestCredentialName(t *testing.T) {
	tests := []struct {
		name string
		ad   []byte
		want string // empty: refused
	}{
		{name: "coffer layout", ad: ad(volumeID, "19fb2a71"),
			want: "coffer-30313233343536373839616263646566-19fb2a71"},
		{name: "no master ID", ad: ad(volumeID, "")},
		{name: "slash in master ID", ad: ad(volumeID, "../x")},
		{name: "other label", ad: append([]byte("coffer-ring-v2\x00"+volumeID), "m1"...)},
		{name: "short", ad: []byte(adPrefix + "0123")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := credentialName(tt.ad)
			if tt.want == "" {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestSealKeepsKeyType opens a copy sealed with the host key, then seals
// again with the same master key: fine while the URI still names the key
// type of the copy it opened, refused once it names another (volume.json
// edited from systemd-creds:host+tpm2 to systemd-creds:host would move the
// ring to the weaker key at the next rotation). No TPM here, so the copy's
// recorded type is replaced by another one to stand for a TPM-sealed copy.
func TestSealKeepsKeyType(t *testing.T) {
	requireSystemdCreds(t)
	ctx := context.Background()
	_, m := enrollHost(t)
	sealed, err := m.Seal(ctx, []byte("ring"), ad(volumeID, "m1"))
	require.NoError(t, err)

	// The host key's type ID, as systemd's creds-util.c defines it.
	cred, _, err := split(sealed)
	require.NoError(t, err)
	typ, err := credType(cred)
	require.NoError(t, err)
	assert.Equal(t, "5a1c6a86df9d4096b1d5a65e0862f19a", hex.EncodeToString(typ))

	entry := keys.MasterEntry{ID: "m1", Kind: Scheme, URI: "systemd-creds:host"}
	opened, err := masterkey.Open(ctx, entry, masterkey.Options{})
	require.NoError(t, err)
	_, err = opened.Unseal(ctx, sealed, ad(volumeID, "m1"))
	require.NoError(t, err)
	_, err = opened.Seal(ctx, []byte("ring2"), ad(volumeID, "m1"))
	require.NoError(t, err, "same key type")

	other := bytes.Repeat([]byte{0x0c}, credTypeSize)
	opened.(*master).opened = other
	_, err = opened.Seal(ctx, []byte("ring3"), ad(volumeID, "m1"))
	require.ErrorIs(t, err, ErrKeyTypeChanged)
	assert.NotContains(t, err.Error(), "\n")
}
