package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/awskms/kmstest"
)

// TestAWSKMSRoundTrip initialises a volume with an aws-kms master key on
// local-kms, mounts it, writes, unmounts, mounts again and reads back; then,
// with KMS stopped, the mount fails with one line and exit 1.
func TestAWSKMSRoundTrip(t *testing.T) {
	kmstest.SetCredentials(t)
	srv := kmstest.Start(t)
	arn := srv.CreateKey(t)
	f := newMountFixture(t)
	endpoint := "--kms-endpoint=" + srv.Endpoint

	r := cli(t, "init", f.backing, "--master", "aws-kms://"+arn, endpoint)
	requireOK(t, r)
	st := cli(t, "status", f.backing)
	requireOK(t, st)
	assert.Contains(t, st.stdout, "aws-kms://"+arn)

	requireOK(t, f.mount(t, endpoint))
	secret := []byte("db_password=kms-sealed\n")
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "app.env"), secret, 0o600))
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	requireOK(t, f.mount(t, endpoint))
	got, err := os.ReadFile(filepath.Join(f.mnt, "app.env"))
	require.NoError(t, err)
	assert.Equal(t, secret, got)
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	srv.Stop()
	before := snapshot(t, f.backing)
	r = f.mount(t, endpoint)
	assertFailure(t, r, exitFailure, "KMS is unreachable")
	assert.Contains(t, r.stderr, "hint: check the network path to KMS")
	assert.NotContains(t, r.stderr, "check the key file", "KMS down is not a wrong key")
	assert.False(t, isMounted(t, f.mnt))
	assert.Equal(t, before, snapshot(t, f.backing))
}

// TestAWSKMSEndpointFromEnvironment mounts with the endpoint taken from
// AWS_ENDPOINT_URL_KMS instead of --kms-endpoint.
func TestAWSKMSEndpointFromEnvironment(t *testing.T) {
	kmstest.SetCredentials(t)
	srv := kmstest.Start(t)
	arn := srv.CreateKey(t)
	f := newMountFixture(t)
	t.Setenv("AWS_ENDPOINT_URL_KMS", srv.Endpoint)

	requireOK(t, cli(t, "init", f.backing, "--master", "aws-kms://"+arn))
	requireOK(t, f.mount(t))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "f"), []byte("x"), 0o600))
	requireOK(t, cliProcess(t, "unmount", f.mnt))
}

// TestAWSKMSInitRefusals checks that init with an unusable KMS key fails
// with one line and exit 1 and writes nothing.
func TestAWSKMSInitRefusals(t *testing.T) {
	kmstest.SetCredentials(t)
	srv := kmstest.Start(t)
	disabled := srv.CreateKey(t)
	srv.DisableKey(t, disabled)
	missing := "arn:aws:kms:" + kmstest.Region + ":" + kmstest.Account +
		":key/00000000-0000-0000-0000-000000000000"

	tests := []struct {
		name, arn, endpoint, want string
		code                      int
	}{
		{"disabled key", disabled, srv.Endpoint, "KMS key is disabled", exitFailure},
		{"missing key", missing, srv.Endpoint, "KMS key not found", exitFailure},
		// Checked when the flag is parsed: a usage error.
		{"bad endpoint", disabled, "127.0.0.1:1", "must be an http:// or https:// URL", exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r := cli(t, "init", f.backing, "--master", "aws-kms://"+tt.arn,
				"--kms-endpoint", tt.endpoint)
			assertFailure(t, r, tt.code, tt.want)
			assert.Empty(t, snapshot(t, f.backing)[".coffer"], "init wrote a config")
			entries, err := os.ReadDir(f.backing)
			require.NoError(t, err)
			assert.Empty(t, entries)
		})
	}
}

// TestAWSKMSMasterAdd adds an aws-kms master key to a key-file volume and
// mounts with it alone.
func TestAWSKMSMasterAdd(t *testing.T) {
	kmstest.SetCredentials(t)
	srv := kmstest.Start(t)
	arn := srv.CreateKey(t)
	f := newMountFixture(t)
	f.init(t)
	endpoint := "--kms-endpoint=" + srv.Endpoint

	requireOK(t, cli(t, "master", "add", f.backing, "aws-kms://"+arn, endpoint))
	requireOK(t, f.mount(t, endpoint, "--master", "aws-kms://"+arn))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "f"), []byte("x"), 0o600))
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	srv.Stop()
	r := f.mount(t, endpoint, "--master", "aws-kms://"+arn)
	assertFailure(t, r, exitFailure, "KMS is unreachable")
	requireOK(t, f.mount(t)) // the key file still opens it
	requireOK(t, cliProcess(t, "unmount", f.mnt))
}
