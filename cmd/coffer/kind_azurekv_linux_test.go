package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/azurekv/kvtest"
)

// azureFixture is a Key Vault contract server with a key, reached by coffer
// processes through the standard variables: SSL_CERT_FILE for its
// certificate, IDENTITY_ENDPOINT and IDENTITY_HEADER for the token.
func azureFixture(t *testing.T) (*kvtest.Server, string) {
	srv := kvtest.Start(t)
	srv.CreateKey(t, "coffer")
	srv.ManagedIdentity(t)
	t.Setenv("SSL_CERT_FILE", srv.WriteCA(t))
	return srv, "--kms-endpoint=" + srv.URL
}

const azureURI = "azure-kv://cofferkv.vault.azure.net/keys/coffer"

// TestAzureKVRoundTrip initialises a volume with an azure-kv master key on
// the contract server, mounts it, writes, unmounts, mounts again and reads
// back; then, with the server stopped, the mount fails with one line and
// exit 1.
func TestAzureKVRoundTrip(t *testing.T) {
	srv, endpoint := azureFixture(t)
	f := newMountFixture(t)

	requireOK(t, cliProcess(t, "init", f.backing, "--master", azureURI, endpoint))
	st := cli(t, "status", f.backing)
	requireOK(t, st)
	assert.Contains(t, st.stdout, azureURI)

	requireOK(t, f.mount(t, endpoint))
	secret := []byte("db_password=key-vault-sealed\n")
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "app.env"), secret, 0o600))
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	requireOK(t, f.mount(t, endpoint))
	got, err := os.ReadFile(filepath.Join(f.mnt, "app.env"))
	require.NoError(t, err)
	assert.Equal(t, secret, got)
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	assert.Contains(t, srv.Calls(), "wrapkey coffer ")

	srv.Stop()
	before := snapshot(t, f.backing)
	r := f.mount(t, endpoint)
	assertFailure(t, r, exitFailure, "Key Vault is unreachable")
	assert.Contains(t, r.stderr, "hint: check the network path to the vault")
	assert.False(t, isMounted(t, f.mnt))
	assert.Equal(t, before, snapshot(t, f.backing))
}

// TestAzureKVInitRefusals checks that init with an unusable key fails with
// one line and exit 1 (2 for a malformed URI) and writes nothing.
func TestAzureKVInitRefusals(t *testing.T) {
	srv, endpoint := azureFixture(t)
	srv.CreateKey(t, "disabled")
	srv.SetEnabled("disabled", false)

	tests := []struct {
		name, uri, endpoint, want string
		code                      int
	}{
		{"disabled key", "azure-kv://cofferkv.vault.azure.net/keys/disabled", endpoint,
			"Key Vault key is disabled", exitFailure},
		{"missing key", "azure-kv://cofferkv.vault.azure.net/keys/nope", endpoint,
			"Key Vault key not found", exitFailure},
		{"http endpoint", azureURI, "--kms-endpoint=http://127.0.0.1:1",
			"must be an https:// URL", exitFailure},
		{"not a vault host", "azure-kv://example.com/keys/coffer", endpoint,
			"must be a vault's DNS name", exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r := cliProcess(t, "init", f.backing, "--master", tt.uri, tt.endpoint)
			assertFailure(t, r, tt.code, tt.want)
			entries, err := os.ReadDir(f.backing)
			require.NoError(t, err)
			assert.Empty(t, entries)
		})
	}
}
