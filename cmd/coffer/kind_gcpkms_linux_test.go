package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/gcpkms/gcpkmstest"
)

// TestGCPKMSRoundTrip initialises a volume with a gcp-kms master key on the
// Cloud KMS stand-in (credentials from GOOGLE_APPLICATION_CREDENTIALS),
// mounts it, writes, unmounts, mounts again and reads back; then, with the
// stand-in stopped, the mount fails with one line and exit 1.
func TestGCPKMSRoundTrip(t *testing.T) {
	srv := gcpkmstest.Start(t)
	srv.WriteCredentials(t)
	name := srv.CreateKey(t, "coffer-test", "europe-west1", "coffer", "ring")
	f := newMountFixture(t)
	endpoint := "--kms-endpoint=" + srv.URL

	requireOK(t, cli(t, "init", f.backing, "--master", "gcp-kms://"+name, endpoint))
	st := cli(t, "status", f.backing)
	requireOK(t, st)
	assert.Contains(t, st.stdout, "gcp-kms://"+name)

	requireOK(t, f.mount(t, endpoint))
	secret := []byte("db_password=cloud-kms-sealed\n")
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "app.env"), secret, 0o600))
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	requireOK(t, f.mount(t, endpoint))
	got, err := os.ReadFile(filepath.Join(f.mnt, "app.env"))
	require.NoError(t, err)
	assert.Equal(t, secret, got)
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	assert.Equal(t, 1, srv.Requests("encrypt"))
	assert.GreaterOrEqual(t, srv.Requests("decrypt"), 2)

	srv.Stop()
	before := snapshot(t, f.backing)
	r := f.mount(t, endpoint)
	assertFailure(t, r, exitFailure, "cloud KMS is unreachable")
	assert.Contains(t, r.stderr, "hint: check the network path to Cloud KMS")
	assert.NotContains(t, r.stderr, "check the key file", "KMS down is not a wrong key")
	assert.False(t, isMounted(t, f.mnt))
	assert.Equal(t, before, snapshot(t, f.backing))
}

// TestGCPKMSInitRefusals checks that init with an unusable key fails with
// one line, a hint and exit 1, and writes nothing.
func TestGCPKMSInitRefusals(t *testing.T) {
	srv := gcpkmstest.Start(t)
	srv.WriteCredentials(t)
	disabled := srv.CreateKey(t, "coffer-test", "global", "r", "disabled")
	srv.SetState(disabled, 1, gcpkmstest.Disabled)
	denied := srv.CreateKey(t, "coffer-test", "global", "r", "denied")
	srv.Deny(denied)

	tests := []struct{ name, key, endpoint, want, hint string }{
		{"disabled key", disabled, srv.URL, "key version is disabled", "versions enable"},
		{"denied key", denied, srv.URL, "permission to use the Cloud KMS key was denied",
			"roles/cloudkms.cryptoKeyEncrypterDecrypter"},
		{"missing key", "projects/coffer-test/locations/global/keyRings/r/cryptoKeys/none",
			srv.URL, "cloud KMS key not found", "check the project"},
		{"plain http off loopback", disabled, "http://192.0.2.1:80",
			"plain http is allowed only to a loopback address", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r := cli(t, "init", f.backing, "--master", "gcp-kms://"+tt.key,
				"--kms-endpoint", tt.endpoint)
			assertFailure(t, r, exitFailure, tt.want)
			assert.Contains(t, r.stderr, tt.hint)
			entries, err := os.ReadDir(f.backing)
			require.NoError(t, err)
			assert.Empty(t, entries)
		})
	}
}
