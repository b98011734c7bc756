package hcvault

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/masterkey"
)

func TestParseURI(t *testing.T) {
	good := []struct {
		uri, canonical, address, mount, name string
	}{
		{"hcvault://vault.example.com:8200/transit/keys/coffer",
			"hcvault://vault.example.com:8200/transit/keys/coffer",
			"https://vault.example.com:8200", "transit", "coffer"},
		{"HCVAULT://Vault.Example.COM/transit/keys/Coffer_1",
			"hcvault://vault.example.com/transit/keys/Coffer_1",
			"https://vault.example.com", "transit", "Coffer_1"},
		{"hcvault://127.0.0.1:8200/team/a-b/transit/keys/k.v2",
			"hcvault://127.0.0.1:8200/team/a-b/transit/keys/k.v2",
			"https://127.0.0.1:8200", "team/a-b/transit", "k.v2"},
		{"hcvault://[::1]:8200/keys/keys/x", "hcvault://[::1]:8200/keys/keys/x",
			"https://[::1]:8200", "keys", "x"},
	}
	for _, tt := range good {
		t.Run(tt.uri, func(t *testing.T) {
			k, err := ParseURI(tt.uri)
			require.NoError(t, err)
			assert.Equal(t, tt.canonical, k.URI())
			assert.Equal(t, tt.address, k.Address())
			assert.Equal(t, tt.mount, k.Mount)
			assert.Equal(t, tt.name, k.Name)
			c, err := Canonical(tt.uri)
			require.NoError(t, err)
			assert.Equal(t, tt.canonical, c)
		})
	}

	bad := []struct{ uri, want string }{
		{"hcvault:vault/transit/keys/k", "want hcvault://"},
		{"hcvault:///transit/keys/k", "names no Vault server"},
		{"hcvault://vault.example.com/transit/k", "/MOUNT/keys/NAME"},
		{"hcvault://vault.example.com/keys/k", "start with the transit mount"},
		{"hcvault://vault.example.com/transit/keys/", "key name"},
		{"hcvault://vault.example.com/transit/keys/a/b", "key name"},
		{"hcvault://vault.example.com/../keys/k", "mount path segment"},
		{"hcvault://vault.example.com/a//b/keys/k", "start with the transit mount"},
		{"hcvault://vault.example.com/transit/keys/k?x=1", "no query"},
		{"hcvault://vault.example.com/transit/keys/k#f", "no query"},
		{"hcvault://user:pw@vault.example.com/transit/keys/k", "no user or password"},
		{"hcvault://vault.example.com:0/transit/keys/k", "bad port"},
		{"hcvault://vault.example.com:99999/transit/keys/k", "bad port"},
		{"hcvault://vault_example.com/transit/keys/k", "bad server name"},
		{"hcvault://vault.example.com/tr%41nsit/keys/k", "escaped"},
		{"aws-kms://vault.example.com/transit/keys/k", "want hcvault://"},
	}
	for _, tt := range bad {
		t.Run(tt.uri, func(t *testing.T) {
			_, err := ParseURI(tt.uri)
			require.Error(t, err)
			assert.ErrorIs(t, err, masterkey.ErrMalformed)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "pw@", "password in the error")
		})
	}
}

func TestCheckEndpoint(t *testing.T) {
	for _, ep := range []string{"http://127.0.0.1:8200", "https://vault:8200/"} {
		assert.NoError(t, checkEndpoint(ep), ep)
	}
	for _, ep := range []string{"127.0.0.1:8200", "ftp://h", "http://", "http://h/v1",
		"http://u:p@h", "http://h?x=1"} {
		err := checkEndpoint(ep)
		assert.ErrorIs(t, err, masterkey.ErrMalformed, ep)
	}
}
