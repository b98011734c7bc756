package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/hcvault/vaulttest"
)

// TestHCVaultRoundTrip initialises a volume with an hcvault master key on
// the transit contract server (TLS, trusted through VAULT_CACERT, token
// from VAULT_TOKEN), mounts it, writes, unmounts, mounts again and reads
// back; then, with the server stopped, the mount fails with one line and
// exit 1 and changes nothing.
func TestHCVaultRoundTrip(t *testing.T) {
	srv := vaulttest.Start(t)
	vaulttest.SetEnv(t, srv)
	srv.CreateKey("transit", "coffer", false)
	uri := "hcvault://" + srv.Host + "/transit/keys/coffer"
	f := newMountFixture(t)

	requireOK(t, cli(t, "init", f.backing, "--master", uri))
	st := cli(t, "status", f.backing)
	requireOK(t, st)
	assert.Contains(t, st.stdout, uri)

	requireOK(t, f.mount(t))
	secret := []byte("db_password=vault-sealed\n")
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "app.env"), secret, 0o600))
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	requireOK(t, f.mount(t))
	got, err := os.ReadFile(filepath.Join(f.mnt, "app.env"))
	require.NoError(t, err)
	assert.Equal(t, secret, got)
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	srv.Stop()
	before := snapshot(t, f.backing)
	r := f.mount(t)
	assertFailure(t, r, exitFailure, "Vault is unreachable")
	assert.Contains(t, r.stderr, "hint: check the network path to the Vault server")
	assert.NotContains(t, r.stderr, "check the key file", "Vault down is not a wrong key")
	assert.False(t, isMounted(t, f.mnt))
	assert.Equal(t, before, snapshot(t, f.backing))
}

// TestHCVaultEndpoint initialises and mounts through --kms-endpoint, a
// plain-http server standing in for a dev server, while the URI names the
// production host.
func TestHCVaultEndpoint(t *testing.T) {
	srv := vaulttest.StartPlain(t)
	vaulttest.SetEnv(t, srv)
	srv.CreateKey("team/transit", "coffer", true)
	uri := "hcvault://vault.invalid:8200/team/transit/keys/coffer"
	endpoint := "--kms-endpoint=" + srv.Address
	f := newMountFixture(t)

	requireOK(t, cli(t, "init", f.backing, "--master", uri, endpoint))
	requireOK(t, f.mount(t, endpoint))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "f"), []byte("x"), 0o600))
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	requireOK(t, f.mount(t, endpoint))
	got, err := os.ReadFile(filepath.Join(f.mnt, "f"))
	require.NoError(t, err)
	assert.Equal(t, "x", string(got))
	requireOK(t, cliProcess(t, "unmount", f.mnt))
}

// TestHCVaultInitRefusals checks that init with an unusable transit key
// fails with one line and exit 1 and writes nothing.
func TestHCVaultInitRefusals(t *testing.T) {
	srv := vaulttest.Start(t)
	vaulttest.SetEnv(t, srv)
	srv.CreateKey("transit", "coffer", false)
	good := "hcvault://" + srv.Host + "/transit/keys/coffer"

	tests := []struct {
		name, uri, token, want, hint string
	}{
		{"missing key", "hcvault://" + srv.Host + "/transit/keys/missing", vaulttest.Token,
			"Vault transit key not found", "check the mount path and key name"},
		{"wrong token", good, "hvs.wrong", "Vault denied access", "vault token lookup"},
		{"no token", good, "", "no Vault token", "VAULT_TOKEN"},
		{"bad URI", "hcvault://" + srv.Host + "/transit/coffer", vaulttest.Token,
			"/MOUNT/keys/NAME", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("VAULT_TOKEN", tt.token)
			f := newFixture(t)
			r := cli(t, "init", f.backing, "--master", tt.uri)
			code := exitFailure
			if tt.hint == "" {
				code = exitUsage // a malformed URI is a usage error
			}
			assertFailure(t, r, code, tt.want)
			if tt.hint != "" {
				assert.Contains(t, r.stderr, "hint: ")
				assert.Contains(t, r.stderr, tt.hint)
			}
			assert.NotContains(t, r.stderr, vaulttest.Token)
			entries, err := os.ReadDir(f.backing)
			require.NoError(t, err)
			assert.Empty(t, entries)
		})
	}
}

// TestHCVaultInHelp checks that the help lists the hcvault URI form.
func TestHCVaultInHelp(t *testing.T) {
	t.Parallel()
	r := cli(t, "--help")
	requireOK(t, r)
	assert.Contains(t, r.stdout, "\n  hcvault://HOST[:PORT]/MOUNT/keys/NAME\n")
}

// TestHCVaultServerConfirmation edits the Vault host in volume.json, as
// whoever can write the backing directory could, to another server the
// client trusts: the mount fails with one line and a hint and that server
// receives nothing, token included. Then the real server, named only by
// the config, is refused until confirmed, and each way of confirming it
// mounts: VAULT_ADDR, --master URI, -o master=URI (fstab) and
// --kms-endpoint.
func TestHCVaultServerConfirmation(t *testing.T) {
	legit, evil := vaulttest.Start(t), vaulttest.Start(t)
	vaulttest.SetEnv(t, legit)
	var cas []byte
	for _, s := range []*vaulttest.Server{legit, evil} {
		s.CreateKey("transit", "coffer", false)
		b, err := os.ReadFile(s.CAFile(t))
		require.NoError(t, err)
		cas = append(cas, b...)
	}
	f := newMountFixture(t)
	caFile := filepath.Join(f.dir, "cas.pem")
	require.NoError(t, os.WriteFile(caFile, cas, 0o600))
	t.Setenv("VAULT_CACERT", caFile)
	uri := "hcvault://" + legit.Host + "/transit/keys/coffer"
	requireOK(t, cli(t, "init", f.backing, "--master", uri))

	cfgPath := filepath.Join(f.backing, ".coffer", "volume.json")
	orig, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	edited := bytes.ReplaceAll(orig, []byte(legit.Host), []byte(evil.Host))
	require.NoError(t, os.WriteFile(cfgPath, edited, 0o600))
	r := f.mount(t)
	assertFailure(t, r, exitFailure, "Vault server not confirmed: https://"+evil.Host+
		" is named only by the volume config")
	assert.Contains(t, r.stderr, "hint: confirm the server outside the backing directory: "+
		"set VAULT_ADDR=https://"+evil.Host)
	assert.Empty(t, evil.Requests(), "the edited server must receive nothing")
	assert.False(t, isMounted(t, f.mnt))
	require.NoError(t, os.WriteFile(cfgPath, orig, 0o600))

	t.Setenv("VAULT_ADDR", "")
	before := len(legit.Requests())
	assertFailure(t, f.mount(t), exitFailure, "Vault server not confirmed")
	assert.Len(t, legit.Requests(), before)

	for _, tt := range []struct {
		name, vaultAddr string
		args            []string
	}{
		{name: "VAULT_ADDR", vaultAddr: legit.Address},
		{name: "--master URI", args: []string{"--master", uri}},
		{name: "-o master=URI", args: []string{"-o", "master=" + uri}},
		{name: "--kms-endpoint", args: []string{"--kms-endpoint", legit.Address}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("VAULT_ADDR", tt.vaultAddr)
			requireOK(t, f.mount(t, tt.args...))
			requireOK(t, cliProcess(t, "unmount", f.mnt))
		})
	}
	assert.Empty(t, evil.Requests())
}
