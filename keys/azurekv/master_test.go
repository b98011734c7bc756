package azurekv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/azurekv/kvtest"
	"github.com/cofferfs/coffer/keys/internal/envelope/envelopetest"
	"github.com/cofferfs/coffer/keys/masterkey"
)

var vol1, vol2 = envelopetest.Vol1, envelopetest.Vol2

// staticCred is a credential that hands out a fixed token, or an error.
type staticCred struct {
	token string
	err   error
}

func (c staticCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken,
	error) {
	if c.err != nil {
		return azcore.AccessToken{}, c.err
	}
	return azcore.AccessToken{Token: c.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// fixture is a contract server with one key, and the test hooks pointing
// at it.
type fixture struct {
	srv *kvtest.Server
}

func newFixture(t *testing.T, cred azcore.TokenCredential) *fixture {
	srv := kvtest.Start(t)
	srv.CreateKey(t, "coffer")
	if cred == nil {
		cred = staticCred{token: kvtest.Token}
	}
	testCredential, testTransport = cred, srv.Client()
	retryDelay = time.Millisecond
	t.Cleanup(func() {
		testCredential, testTransport = nil, nil
		retryDelay = 500 * time.Millisecond
	})
	return &fixture{srv: srv}
}

// master opens uri through the masterkey registry, as the CLI does.
func (f *fixture) master(t *testing.T, uri string) keys.Master {
	t.Helper()
	m, err := masterkey.Open(context.Background(), keys.MasterEntry{ID: "m1", Kind: Scheme,
		URI: uri}, masterkey.Options{KMSEndpoint: f.srv.URL})
	require.NoError(t, err)
	return m
}

const uri = "azure-kv://cofferkv.vault.azure.net/keys/coffer"

func TestRoundTrip(t *testing.T) {
	f := newFixture(t, nil)
	payload := bytes.Repeat([]byte("ring payload "), 1000)
	ad := keys.RingAD(vol1, "m1")

	sealed, err := f.master(t, uri).Seal(context.Background(), payload, ad)
	require.NoError(t, err)
	assert.False(t, bytes.Contains(sealed, payload[:64]), "payload in the clear")

	// The key is rotated: the copy names the version that wrapped it.
	f.srv.CreateKey(t, "coffer")
	got, err := f.master(t, uri).Unseal(context.Background(), sealed, ad)
	require.NoError(t, err)
	assert.Equal(t, payload, got)
	calls := f.srv.Calls()
	require.Len(t, calls, 2)
	assert.Equal(t, "wrapkey coffer ", calls[0])
	version, _, _, err := parseSealed(sealed)
	require.NoError(t, err)
	assert.Equal(t, "unwrapkey coffer "+version, calls[1])

	// A URI pinned to that version opens it too.
	got, err = f.master(t, uri+"/"+version).Unseal(context.Background(), sealed, ad)
	require.NoError(t, err)
	assert.Equal(t, payload, got)
}

// TestWrappedPlaintext checks the binding with the server's key, outside the
// client: the wrapped value decrypts to KEK || SHA-256(ring AD).
func TestWrappedPlaintext(t *testing.T) {
	f := newFixture(t, nil)
	ad := keys.RingAD(vol1, "5e1f00aa")
	sealed, err := f.master(t, uri).Seal(context.Background(), []byte("x"), ad)
	require.NoError(t, err)
	version, wrapped, _, err := parseSealed(sealed)
	require.NoError(t, err)
	assert.Len(t, wrapped, 256, "RSA-2048 OAEP output")

	plain, err := f.srv.Unwrap("coffer", version, wrapped)
	require.NoError(t, err)
	require.Len(t, plain, 64)
	want := sha256.Sum256(append([]byte("coffer-ring-v1\x00\x01\x02\x03\x04\x05\x06\x07\x08"+
		"\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"), "5e1f00aa"...))
	assert.Equal(t, want[:], plain[32:])
}

func TestWrongBinding(t *testing.T) {
	f := newFixture(t, nil)
	f.srv.CreateKey(t, "other")
	m := f.master(t, uri)
	sealed, err := m.Seal(context.Background(), []byte("ring"), keys.RingAD(vol1, "m1"))
	require.NoError(t, err)
	version, _, _, err := parseSealed(sealed)
	require.NoError(t, err)
	other := f.srv.CreateKey(t, "coffer")

	tests := []struct {
		name string
		m    keys.Master
		ad   []byte
	}{
		{"other volume", m, keys.RingAD(vol2, "m1")},
		{"other master ID", m, keys.RingAD(vol1, "m2")},
		{"other key", f.master(t, "azure-kv://cofferkv.vault.azure.net/keys/other"),
			keys.RingAD(vol1, "m1")},
		{"other pinned version", f.master(t, uri+"/"+other), keys.RingAD(vol1, "m1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.m.Unseal(context.Background(), sealed, tt.ad)
			assert.ErrorIs(t, err, keys.ErrWrongKey)
		})
	}

	// The copy moved to another key's slot, with the version rewritten:
	// the other key cannot unwrap it.
	moved := bytes.Clone(sealed)
	copy(moved[2:], other)
	_, err = m.Unseal(context.Background(), moved, keys.RingAD(vol1, "m1"))
	assert.ErrorIs(t, err, keys.ErrWrongKey)
	assert.NotEqual(t, version, other)
}

func TestTampered(t *testing.T) {
	f := newFixture(t, nil)
	m := f.master(t, uri)
	ad := keys.RingAD(vol1, "m1")
	sealed, err := m.Seal(context.Background(), []byte("ring payload"), ad)
	require.NoError(t, err)
	version, wrapped, _, err := parseSealed(sealed)
	require.NoError(t, err)
	start := 4 + len(version)

	envelopetest.Tampered(t, m, sealed, ad, start+len(wrapped),
		envelopetest.Edit{Name: "key version", Edit: func(b []byte) []byte { b[2] ^= 1; return b }},
		envelopetest.Edit{Name: "length field",
			Edit: func(b []byte) []byte { b[start-1] ^= 1; return b }},
		envelopetest.Edit{Name: "wrapped key",
			Edit: func(b []byte) []byte { b[start+len(wrapped)/2] ^= 1; return b }},
		envelopetest.Edit{Name: "header only", Edit: func(b []byte) []byte { return b[:start] }},
	)
}

// TestErrorResponses checks that each documented error answer becomes one
// error with its cause and hint, and that throttling and server errors are
// retried.
func TestErrorResponses(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(*kvtest.Server)
		cred    azcore.TokenCredential
		want    error
		message string
	}{
		{name: "disabled key", setup: func(s *kvtest.Server) { s.SetEnabled("coffer", false) },
			want: ErrKeyDisabled, message: "not allowed on a disabled key"},
		{name: "no permission", setup: func(s *kvtest.Server) { s.Deny("coffer", "wrapKey") },
			want: ErrAccessDenied, message: "does not have keys wrapKey permission"},
		{name: "rejected token", cred: staticCred{token: "expired"}, want: ErrCredentials,
			message: "HTTP 401 Unauthorized: AKV10032"},
		{name: "no credentials", cred: staticCred{err: errors.New("EnvironmentCredential: " +
			"missing environment variable AZURE_TENANT_ID")}, want: ErrCredentials,
			message: "missing environment variable AZURE_TENANT_ID"},
		{name: "throttled past the retries", setup: func(s *kvtest.Server) {
			s.Fail(kvtest.Failure{Status: 429, Code: "Throttled", Message: "Too many requests",
				Times: 3})
		}, want: ErrUnavailable, message: "HTTP 429 Throttled"},
		{name: "service unavailable past the retries", setup: func(s *kvtest.Server) {
			s.Fail(kvtest.Failure{Status: 503, Code: "ServiceUnavailable", Message: "down",
				Times: 3})
		}, want: ErrUnavailable, message: "HTTP 503 ServiceUnavailable"},
		{name: "not an RSA key", setup: func(s *kvtest.Server) {
			s.Fail(kvtest.Failure{Status: 400, Code: "BadParameter",
				Message: "Operation wrapKey is not supported for this key type", Times: 1})
		}, want: ErrBadRequest, message: "not supported for this key type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cred)
			if tt.setup != nil {
				tt.setup(f.srv)
			}
			_, err := f.master(t, uri).Seal(context.Background(), []byte("r"),
				keys.RingAD(vol1, "m1"))
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.want)
			assert.NotErrorIs(t, err, keys.ErrWrongKey)
			assert.Contains(t, err.Error(), tt.message)
			assert.NotContains(t, err.Error(), "\n")
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.NotEmpty(t, e.Hint())
		})
	}

	t.Run("missing key", func(t *testing.T) {
		f := newFixture(t, nil)
		_, err := f.master(t, "azure-kv://cofferkv.vault.azure.net/keys/nope").Seal(
			context.Background(), []byte("r"), keys.RingAD(vol1, "m1"))
		assert.ErrorIs(t, err, ErrKeyNotFound)
		assert.Contains(t, err.Error(), "HTTP 404 KeyNotFound")
	})

	t.Run("retried throttling succeeds", func(t *testing.T) {
		f := newFixture(t, nil)
		f.srv.Fail(kvtest.Failure{Status: 429, Code: "Throttled", Message: "slow down", Times: 2})
		_, err := f.master(t, uri).Seal(context.Background(), []byte("r"),
			keys.RingAD(vol1, "m1"))
		assert.NoError(t, err)
	})

	t.Run("unwrap of a disabled key", func(t *testing.T) {
		f := newFixture(t, nil)
		m := f.master(t, uri)
		sealed, err := m.Seal(context.Background(), []byte("r"), keys.RingAD(vol1, "m1"))
		require.NoError(t, err)
		f.srv.SetEnabled("coffer", false)
		_, err = m.Unseal(context.Background(), sealed, keys.RingAD(vol1, "m1"))
		assert.ErrorIs(t, err, ErrKeyDisabled)
		assert.NotErrorIs(t, err, keys.ErrWrongKey)
	})
}

// TestUnreachable checks that a stopped server and a server that never
// answers both fail within the call bounds.
func TestUnreachable(t *testing.T) {
	t.Run("stopped", func(t *testing.T) {
		f := newFixture(t, nil)
		m := f.master(t, uri)
		f.srv.Stop()
		_, err := m.Seal(context.Background(), []byte("r"), keys.RingAD(vol1, "m1"))
		assert.ErrorIs(t, err, ErrUnreachable)
		assert.Contains(t, err.Error(), "at "+f.srv.URL)
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		f := newFixture(t, nil)
		testTransport = nil // the system roots, which do not hold the server's
		_, err := f.master(t, uri).Seal(context.Background(), []byte("r"),
			keys.RingAD(vol1, "m1"))
		assert.ErrorIs(t, err, ErrUnreachable)
		assert.Contains(t, err.Error(), "certificate")
	})

	t.Run("silent", func(t *testing.T) {
		newFixture(t, nil)
		callTimeout = 300 * time.Millisecond
		t.Cleanup(func() { callTimeout = 30 * time.Second })
		err := envelopetest.SealToHangingServer(t, "https", func(ep string) (keys.Master, error) {
			return New(context.Background(), uri, ep)
		})
		assert.ErrorIs(t, err, ErrUnreachable)
	})
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		name, uri string
		want      Key
		ok        bool
	}{
		{"name", "azure-kv://MyVault.vault.azure.net/keys/coffer-1",
			Key{Host: "myvault.vault.azure.net", Name: "coffer-1"}, true},
		{"version", "azure-kv://myvault.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef",
			Key{Host: "myvault.vault.azure.net", Name: "k",
				Version: "0123456789abcdef0123456789abcdef"}, true},
		{"managed HSM", "azure-kv://myhsm.managedhsm.azure.net/keys/k",
			Key{Host: "myhsm.managedhsm.azure.net", Name: "k"}, true},
		{"other host", "azure-kv://example.com/keys/k", Key{}, false},
		{"suffix in the middle", "azure-kv://myvault.vault.azure.net.evil.example/keys/k",
			Key{}, false},
		{"dot in the vault name", "azure-kv://a.evil.vault.azure.net/keys/k", Key{}, false},
		{"user part", "azure-kv://myvault.vault.azure.net@evil.example/keys/k", Key{}, false},
		{"port", "azure-kv://myvault.vault.azure.net:8443/keys/k", Key{}, false},
		{"IP address", "azure-kv://127.0.0.1/keys/k", Key{}, false},
		{"secrets path", "azure-kv://myvault.vault.azure.net/secrets/k", Key{}, false},
		{"no name", "azure-kv://myvault.vault.azure.net/keys/", Key{}, false},
		{"bad version", "azure-kv://myvault.vault.azure.net/keys/k/v1", Key{}, false},
		{"query", "azure-kv://myvault.vault.azure.net/keys/k?x=1", Key{}, false},
		{"trailing slash", "azure-kv://myvault.vault.azure.net/keys/k/", Key{}, false},
		{"no slashes", "azure-kv:myvault.vault.azure.net/keys/k", Key{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseURI(tt.uri)
			if !tt.ok {
				assert.ErrorIs(t, err, masterkey.ErrMalformed)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, k)
			again, err := ParseURI(k.URI())
			require.NoError(t, err)
			assert.Equal(t, k, again)
		})
	}
}

// countingCred is a credential that counts its token requests.
type countingCred struct{ calls *int }

func (c countingCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken,
	error) {
	*c.calls++
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestTokenScopes checks that the client gets tokens for Key Vault and
// Managed HSM only, whatever scope a server's challenge names: with an
// endpoint the SDK does not check the challenge against the host.
func TestTokenScopes(t *testing.T) {
	calls := 0
	c := credTagger{countingCred{&calls}}
	for _, scope := range []string{"https://vault.azure.net/.default",
		"https://managedhsm.azure.net/.default", "https://vault.azure.cn/.default",
		"https://vault.usgovcloudapi.net/.default"} {
		_, err := c.GetToken(context.Background(), policy.TokenRequestOptions{
			Scopes: []string{scope}})
		assert.NoError(t, err, scope)
	}
	assert.Equal(t, 4, calls)
	for _, scope := range []string{"https://management.azure.com/.default",
		"https://storage.azure.com/.default", "https://vault.azure.net.evil.example/.default",
		"https://graph.microsoft.com/.default"} {
		_, err := c.GetToken(context.Background(), policy.TokenRequestOptions{
			Scopes: []string{"https://vault.azure.net/.default", scope}})
		assert.ErrorContains(t, err, "not Key Vault's", scope)
	}
	assert.Equal(t, 4, calls, "a refused scope must not reach the credential")
}

// TestChallengeVerification checks when the SDK's check of the challenge's
// resource against the vault host is on: always for the vault a URI names,
// and for an endpoint that is itself a vault's host; off only for an
// endpoint elsewhere (a private endpoint), where TestTokenScopes holds.
func TestChallengeVerification(t *testing.T) {
	for _, tt := range []struct {
		url  string
		want bool
	}{
		{"https://myvault.vault.azure.net", true},
		{"https://MyHSM.managedhsm.azure.net/", true},
		{"https://myvault.privatelink.vaultcore.azure.net", false},
		{"https://127.0.0.1:8443", false},
		{"https://myvault.vault.azure.net.evil.example", false},
	} {
		assert.Equal(t, tt.want, verifyChallenge(tt.url), tt.url)
	}
}

func TestEndpointCheck(t *testing.T) {
	for _, ep := range []string{"http://127.0.0.1:1", "127.0.0.1:1", "https://h/x", "https://"} {
		_, err := New(context.Background(), uri, ep)
		assert.ErrorIs(t, err, masterkey.ErrMalformed, ep)
	}
}

// TestDefaultCredential takes the token the way a deployment does: through
// DefaultAzureCredential and the standard managed identity variables. The
// server accepts no other token, so a seal proves the path. (A refused
// identity is not tested here: MSAL caches managed identity tokens per
// process.)
func TestDefaultCredential(t *testing.T) {
	f := newFixture(t, nil)
	testCredential = nil
	f.srv.ManagedIdentity(t)

	m := f.master(t, uri)
	ad := keys.RingAD(vol1, "m1")
	sealed, err := m.Seal(context.Background(), []byte("ring"), ad)
	require.NoError(t, err)
	got, err := m.Unseal(context.Background(), sealed, ad)
	require.NoError(t, err)
	assert.Equal(t, []byte("ring"), got)
}

// TestRegistered checks that the kind is registered and that the registry
// records the canonical URI (lower-case host).
func TestRegistered(t *testing.T) {
	ref, err := masterkey.Parse("azure-kv://CofferKV.vault.azure.net/keys/coffer")
	require.NoError(t, err)
	assert.Equal(t, Scheme, ref.Kind)
	assert.Equal(t, uri, ref.URI)
	assert.Contains(t, masterkey.Supported(), Form)

	_, err = masterkey.Parse("azure-kv://nonsense")
	assert.ErrorIs(t, err, masterkey.ErrMalformed)
}

// TestEnrollThenOpen seals through masterkey.Enroll and opens through
// masterkey.Open, as init and mount do.
func TestEnrollThenOpen(t *testing.T) {
	f := newFixture(t, nil)
	opts := masterkey.Options{KMSEndpoint: f.srv.URL}
	e, err := masterkey.Enroll(context.Background(), uri, opts)
	require.NoError(t, err)
	assert.Equal(t, Scheme, e.Kind)
	ad := keys.RingAD(vol1, "m1")
	sealed, err := e.Master.Seal(context.Background(), []byte("ring"), ad)
	require.NoError(t, err)

	m, err := masterkey.Open(context.Background(), keys.MasterEntry{ID: "m1", Kind: e.Kind,
		URI: e.URI}, opts)
	require.NoError(t, err)
	got, err := m.Unseal(context.Background(), sealed, ad)
	require.NoError(t, err)
	assert.Equal(t, []byte("ring"), got)
}
