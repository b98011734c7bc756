package gcpkms

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/masterkey"
)

func TestParseURI(t *testing.T) {
	const name = "projects/my-project/locations/europe-west1/keyRings/coffer/cryptoKeys/ring_1"
	tests := []struct{ name, uri, want string }{
		{"key", "gcp-kms://" + name, name},
		{"upper-case scheme", "GCP-KMS://" + name, name},
		{"global location", "gcp-kms://projects/p-1/locations/global/keyRings/r/cryptoKeys/k",
			"projects/p-1/locations/global/keyRings/r/cryptoKeys/k"},
		{"domain-scoped project",
			"gcp-kms://projects/example.com:proj/locations/us/keyRings/r/cryptoKeys/k",
			"projects/example.com:proj/locations/us/keyRings/r/cryptoKeys/k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseURI(tt.uri)
			require.NoError(t, err)
			assert.Equal(t, tt.want, k.Name)
			assert.Equal(t, "gcp-kms://"+tt.want, k.URI())
		})
	}
}

func TestParseURIRefusals(t *testing.T) {
	tests := []struct{ name, uri, want string }{
		{"no slashes", "gcp-kms:projects/p/locations/l/keyRings/r/cryptoKeys/k", "want gcp-kms://"},
		{"bare key", "gcp-kms://k", "want gcp-kms://"},
		{"key ring only", "gcp-kms://projects/p/locations/l/keyRings/r", "want gcp-kms://"},
		{"key version", "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k/" +
			"cryptoKeyVersions/1", "not a key version"},
		{"misspelt collection", "gcp-kms://projects/p/locations/l/keyrings/r/cryptoKeys/k",
			"want gcp-kms://"},
		{"empty project", "gcp-kms://projects//locations/l/keyRings/r/cryptoKeys/k",
			"project ID"},
		{"dot in key", "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/a.b",
			"crypto key ID"},
		{"trailing slash", "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k/",
			"want gcp-kms://"},
		{"query", "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k?x=1", "no query"},
		{"fragment", "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k#x", "no query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseURI(tt.uri)
			require.Error(t, err)
			assert.ErrorIs(t, err, masterkey.ErrMalformed)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestRegistered(t *testing.T) {
	const uri = "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k"
	ref, err := masterkey.Parse(uri)
	require.NoError(t, err)
	assert.Equal(t, Scheme, ref.Kind)
	assert.Equal(t, uri, ref.URI)
	assert.Contains(t, masterkey.Supported(), Form)

	_, err = masterkey.Parse("gcp-kms://nonsense")
	assert.ErrorIs(t, err, masterkey.ErrMalformed)
}

func TestCheckEndpoint(t *testing.T) {
	for _, ep := range []string{"http://127.0.0.1:4599", "http://[::1]:80", "http://localhost:1",
		"https://cloudkms.googleapis.com", "https://kms.internal.example:8443/"} {
		assert.NoError(t, checkEndpoint(ep), ep)
	}
	for _, ep := range []string{"127.0.0.1:4599", "ftp://host", "https://", "https://u:p@host",
		"https://host/?q=1", "https://host/v1", "http://cloudkms.googleapis.com",
		"http://10.0.0.1:80"} {
		assert.ErrorIs(t, checkEndpoint(ep), masterkey.ErrMalformed, ep)
	}
}
