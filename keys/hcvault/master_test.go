package hcvault

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/hcvault/vaulttest"
	"github.com/cofferfs/coffer/keys/internal/envelope"
	"github.com/cofferfs/coffer/keys/internal/envelope/envelopetest"
	"github.com/cofferfs/coffer/keys/masterkey"
)

var vol1, vol2 = envelopetest.Vol1, envelopetest.Vol2

func TestMain(m *testing.M) {
	// Retries wait milliseconds, not seconds, in tests.
	minRetryWait, maxRetryWait = time.Millisecond, 5*time.Millisecond
	os.Exit(m.Run())
}

// fixture is a TLS contract server with the key transit/keys/coffer, and
// the environment pointing the client at it (VAULT_TOKEN, VAULT_CACERT).
type fixture struct {
	srv *vaulttest.Server
}

func newFixture(t *testing.T) *fixture {
	srv := vaulttest.Start(t)
	vaulttest.SetEnv(t, srv)
	srv.CreateKey("transit", "coffer", false)
	return &fixture{srv: srv}
}

func (f *fixture) uri(mount, name string) string {
	return "hcvault://" + f.srv.Host + "/" + mount + "/keys/" + name
}

// master opens the master for uri through the masterkey registry, as the
// CLI does.
func (f *fixture) master(t *testing.T, uri, endpoint string) keys.Master {
	t.Helper()
	m, err := masterkey.Open(context.Background(), keys.MasterEntry{ID: "m1", Kind: Scheme,
		URI: uri}, masterkey.Options{KMSEndpoint: endpoint})
	require.NoError(t, err)
	return m
}

func TestRoundTrip(t *testing.T) {
	f := newFixture(t)
	f.srv.CreateKey("team/transit", "derived", true)
	payload := bytes.Repeat([]byte("ring payload "), 1000)

	for _, uri := range []string{f.uri("transit", "coffer"), f.uri("team/transit", "derived")} {
		t.Run(uri, func(t *testing.T) {
			ad := keys.RingAD(vol1, "m1")
			sealed, err := f.master(t, uri, "").Seal(context.Background(), payload, ad)
			require.NoError(t, err)
			assert.False(t, bytes.Contains(sealed, payload[:64]), "payload in the clear")
			got, err := f.master(t, uri, "").Unseal(context.Background(), sealed, ad)
			require.NoError(t, err)
			assert.Equal(t, payload, got)
		})
	}
}

// TestRequestShape checks the transit calls against the documented request
// body: base64 plaintext, associated_data and context, the token header,
// and the path MOUNT/encrypt/NAME.
func TestRequestShape(t *testing.T) {
	f := newFixture(t)
	ad := keys.RingAD(vol1, "5e1f00aa")
	m := f.master(t, f.uri("transit", "coffer"), "")
	sealed, err := m.Seal(context.Background(), []byte("x"), ad)
	require.NoError(t, err)
	_, err = m.Unseal(context.Background(), sealed, ad)
	require.NoError(t, err)

	reqs := f.srv.Requests()
	require.Len(t, reqs, 2)
	wantAD := base64.StdEncoding.EncodeToString(
		append([]byte("coffer-ring-v1\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d"+
			"\x0e\x0f\x10"), "5e1f00aa"...))
	assert.Equal(t, "/v1/transit/encrypt/coffer", reqs[0].Path)
	assert.Equal(t, wantAD, reqs[0].Body["associated_data"])
	assert.Equal(t, wantAD, reqs[0].Body["context"])
	pt, err := base64.StdEncoding.DecodeString(reqs[0].Body["plaintext"].(string))
	require.NoError(t, err)
	assert.Len(t, pt, 32, "the KEK, not the ring, goes to Vault")
	assert.Equal(t, "/v1/transit/decrypt/coffer", reqs[1].Path)
	assert.Equal(t, wantAD, reqs[1].Body["associated_data"])
	assert.True(t, strings.HasPrefix(reqs[1].Body["ciphertext"].(string), "vault:v1:"))
}

// TestCiphertextIndependently opens the transit ciphertext in a sealed copy
// with the key's material and crypto/cipher, outside the server: it is
// AES-256-GCM with the ring AD as additional data, and the KEK it holds
// opens the box.
func TestCiphertextIndependently(t *testing.T) {
	f := newFixture(t)
	f.srv.CreateKey("transit", "derived", true)
	ad := keys.RingAD(vol2, "m7")

	for _, name := range []string{"coffer", "derived"} {
		t.Run(name, func(t *testing.T) {
			sealed, err := f.master(t, f.uri("transit", name), "").Seal(context.Background(),
				[]byte("ring"), ad)
			require.NoError(t, err)
			ct, _, err := parseSealed(sealed)
			require.NoError(t, err)
			b64, ok := strings.CutPrefix(string(ct), "vault:v1:")
			require.True(t, ok, string(ct))
			raw, err := base64.StdEncoding.DecodeString(b64)
			require.NoError(t, err)

			material := f.srv.KeyMaterial("transit", name, 1)
			if name == "derived" {
				material, err = hkdf.Key(sha256.New, material, nil, string(ad), 32)
				require.NoError(t, err)
			}
			block, err := aes.NewCipher(material)
			require.NoError(t, err)
			g, err := cipher.NewGCM(block)
			require.NoError(t, err)
			kek, err := g.Open(nil, raw[:12], raw[12:], ad)
			require.NoError(t, err)
			assert.Len(t, kek, 32)
			_, err = g.Open(nil, raw[:12], raw[12:], keys.RingAD(vol1, "m7"))
			assert.Error(t, err, "the ring AD is not bound")
		})
	}
}

func TestWrongBinding(t *testing.T) {
	f := newFixture(t)
	f.srv.CreateKey("transit", "other", false)
	f.srv.CreateKey("transit", "derived", true)
	other := f.master(t, f.uri("transit", "other"), "")
	for _, name := range []string{"coffer", "derived"} {
		t.Run(name, func(t *testing.T) {
			envelopetest.WrongBinding(t, f.master(t, f.uri("transit", name), ""), other,
				func(t *testing.T, err error) {
					// Vault itself refused it, not only the local box.
					assert.Contains(t, err.Error(), "message authentication failed")
				})
		})
	}
}

func TestTampered(t *testing.T) {
	f := newFixture(t)
	m := f.master(t, f.uri("transit", "coffer"), "")
	ad := keys.RingAD(vol1, "m1")
	sealed, err := m.Seal(context.Background(), []byte("ring payload"), ad)
	require.NoError(t, err)
	ct, _, err := parseSealed(sealed)
	require.NoError(t, err)
	h, end := envelope.HeaderSize, envelope.HeaderSize+len(ct)

	envelopetest.Tampered(t, m, sealed, ad, end,
		envelopetest.Edit{Name: "length field", Edit: func(b []byte) []byte { b[2] ^= 1; return b }},
		envelopetest.Edit{Name: "transit ciphertext",
			Edit: func(b []byte) []byte { b[end-3] ^= 1; return b }},
		envelopetest.Edit{Name: "key version", Edit: func(b []byte) []byte { b[h+7] = '9'; return b }},
		envelopetest.Edit{Name: "prefix", Edit: func(b []byte) []byte { b[h] = 'V'; return b }},
		envelopetest.Edit{Name: "header only", Edit: func(b []byte) []byte { return b[:h] }},
	)
}

// TestKeyVersions checks rotation: old copies still open, new seals use the
// newest version, and a min_decryption_version above the sealing version
// is its own error.
func TestKeyVersions(t *testing.T) {
	f := newFixture(t)
	m := f.master(t, f.uri("transit", "coffer"), "")
	ad := keys.RingAD(vol1, "m1")
	v1, err := m.Seal(context.Background(), []byte("ring"), ad)
	require.NoError(t, err)
	f.srv.Rotate("transit", "coffer")

	v2, err := m.Seal(context.Background(), []byte("ring"), ad)
	require.NoError(t, err)
	ct, _, err := parseSealed(v2)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(ct), "vault:v2:"), string(ct))
	for _, s := range [][]byte{v1, v2} {
		got, err := m.Unseal(context.Background(), s, ad)
		require.NoError(t, err)
		assert.Equal(t, "ring", string(got))
	}

	f.srv.SetMinDecryptionVersion("transit", "coffer", 2)
	_, err = m.Unseal(context.Background(), v1, ad)
	assertVaultError(t, err, ErrKeyVersion, "min_decryption_version")
	assert.NotErrorIs(t, err, keys.ErrWrongKey)
	_, err = m.Unseal(context.Background(), v2, ad)
	assert.NoError(t, err)
}

// TestErrorResponses answers calls with the documented error bodies and
// checks that each becomes one line with the right cause and hint, and that
// throttling and server errors are retried.
func TestErrorResponses(t *testing.T) {
	f := newFixture(t)
	ad := keys.RingAD(vol1, "m1")
	m := f.master(t, f.uri("transit", "coffer"), "")
	sealed, err := m.Seal(context.Background(), []byte("ring"), ad)
	require.NoError(t, err)

	tests := []struct {
		name   string
		status int
		msgs   []string
		times  int // how many calls in a row answer so
		kind   error
		hint   string
		gist   string
	}{
		{"permission denied", 403, []string{"permission denied"}, 1, ErrAccessDenied,
			"vault token lookup", "HTTP 403: permission denied"},
		{"multi-line error", 403, []string{"1 error occurred:\n\t* permission denied\n\n"}, 1,
			ErrAccessDenied, "policy", "HTTP 403: permission denied"},
		{"no route", 404, []string{`no handler for route "x/decrypt/coffer". route entry ` +
			`not found.`}, 1, ErrKeyNotFound, "mount path", "no handler for route"},
		{"key type", 400, []string{"associated data is only supported for AEAD key types"}, 1,
			ErrRejected, "aes256-gcm96", "AEAD key types"},
		{"sealed", 503, []string{"Vault is sealed"}, 3, ErrUnavailable, "unseal",
			"HTTP 503: Vault is sealed"},
		{"internal error", 500, []string{"internal error"}, 3, ErrUnavailable, "try again",
			"HTTP 500: internal error"},
		{"rate limited", 429, []string{"request path \"transit/decrypt/coffer\": rate limit " +
			"quota exceeded"}, 3, ErrUnavailable, "try again", "rate limit quota exceeded"},
		{"throttled once", 429, []string{"rate limit quota exceeded"}, 1, nil, "", ""},
		{"server error once", 502, []string{"bad gateway"}, 2, nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.srv.Requests())
			for range tt.times {
				f.srv.Fail(tt.status, tt.msgs...)
			}
			got, err := m.Unseal(context.Background(), sealed, ad)
			if tt.kind == nil {
				require.NoError(t, err)
				assert.Equal(t, "ring", string(got))
				assert.Equal(t, tt.times+1, len(f.srv.Requests())-before, "retried")
				return
			}
			assertVaultError(t, err, tt.kind, tt.hint)
			assert.Contains(t, err.Error(), tt.gist)
			assert.NotErrorIs(t, err, keys.ErrWrongKey)
			assert.Equal(t, tt.times, len(f.srv.Requests())-before)
		})
	}
}

func TestKeyNotFound(t *testing.T) {
	f := newFixture(t)
	ad := keys.RingAD(vol1, "m1")
	_, err := f.master(t, f.uri("transit", "missing"), "").Seal(context.Background(),
		[]byte("ring"), ad)
	assertVaultError(t, err, ErrKeyNotFound, "key name")
	assert.Contains(t, err.Error(), "encryption key not found")

	_, err = f.master(t, f.uri("nomount", "coffer"), "").Seal(context.Background(),
		[]byte("ring"), ad)
	assertVaultError(t, err, ErrKeyNotFound, "mount path")
}

func TestTokens(t *testing.T) {
	f := newFixture(t)
	ad := keys.RingAD(vol1, "m1")
	seal := func() error {
		m, err := New(context.Background(), f.uri("transit", "coffer"), "")
		require.NoError(t, err)
		_, err = m.Seal(context.Background(), []byte("ring"), ad)
		return err
	}

	t.Run("VAULT_TOKEN", func(t *testing.T) { assert.NoError(t, seal()) })
	t.Run("wrong token", func(t *testing.T) {
		t.Setenv("VAULT_TOKEN", "hvs.wrong")
		assertVaultError(t, seal(), ErrAccessDenied, "vault token lookup")
	})
	t.Run("no token", func(t *testing.T) {
		t.Setenv("VAULT_TOKEN", "")
		before := len(f.srv.Requests())
		assertVaultError(t, seal(), ErrCredentials, "~/.vault-token")
		assert.Len(t, f.srv.Requests(), before, "a call without a token was sent")
	})
	t.Run("token file", func(t *testing.T) {
		t.Setenv("VAULT_TOKEN", "")
		home := t.TempDir()
		t.Setenv("HOME", home)
		require.NoError(t, os.WriteFile(filepath.Join(home, ".vault-token"),
			[]byte(vaulttest.Token+"\n"), 0o600))
		assert.NoError(t, seal())
	})
	t.Run("VAULT_TOKEN before the token file", func(t *testing.T) {
		home := t.TempDir()
		t.Setenv("HOME", home)
		require.NoError(t, os.WriteFile(filepath.Join(home, ".vault-token"),
			[]byte("hvs.stale"), 0o600))
		assert.NoError(t, seal())
	})
}

func TestNamespace(t *testing.T) {
	f := newFixture(t)
	f.srv.RequireNamespace("team-a")
	m := f.master(t, f.uri("transit", "coffer"), "")
	_, err := m.Seal(context.Background(), []byte("ring"), keys.RingAD(vol1, "m1"))
	assertVaultError(t, err, ErrAccessDenied, "VAULT_NAMESPACE")

	t.Setenv("VAULT_NAMESPACE", "team-a")
	m = f.master(t, f.uri("transit", "coffer"), "")
	_, err = m.Seal(context.Background(), []byte("ring"), keys.RingAD(vol1, "m1"))
	require.NoError(t, err)
	reqs := f.srv.Requests()
	assert.Equal(t, "team-a", reqs[len(reqs)-1].Namespace)
}

// TestTLS checks that the server's certificate must be trusted: without
// VAULT_CACERT the call fails with a TLS error and is not retried.
func TestTLS(t *testing.T) {
	f := newFixture(t)
	t.Setenv("VAULT_CACERT", "")
	_, err := f.master(t, f.uri("transit", "coffer"), "").Seal(context.Background(),
		[]byte("ring"), keys.RingAD(vol1, "m1"))
	assertVaultError(t, err, ErrTLS, "VAULT_CACERT")
	assert.Empty(t, f.srv.Requests())

	t.Setenv("VAULT_CACERT", filepath.Join(t.TempDir(), "missing.pem"))
	_, err = New(context.Background(), f.uri("transit", "coffer"), "")
	assertVaultError(t, err, ErrTLS, "VAULT_CACERT")
}

// TestEndpointOverride reaches a plain-http server through --kms-endpoint
// while the URI names another host; VAULT_ADDR is not read.
func TestEndpointOverride(t *testing.T) {
	srv := vaulttest.StartPlain(t)
	vaulttest.SetEnv(t, srv)
	srv.CreateKey("transit", "coffer", false)
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	uri := "hcvault://vault.invalid:8200/transit/keys/coffer"
	ad := keys.RingAD(vol1, "m1")

	m, err := New(context.Background(), uri, srv.Address)
	require.NoError(t, err)
	sealed, err := m.Seal(context.Background(), []byte("ring"), ad)
	require.NoError(t, err)
	got, err := m.Unseal(context.Background(), sealed, ad)
	require.NoError(t, err)
	assert.Equal(t, "ring", string(got))
	assert.Len(t, srv.Requests(), 2)

	_, err = New(context.Background(), uri, "127.0.0.1:8200")
	assert.ErrorIs(t, err, masterkey.ErrMalformed)
}

// TestStoppedServer checks that a server that went away fails the unseal
// with ErrUnreachable well within the call timeout.
func TestStoppedServer(t *testing.T) {
	f := newFixture(t)
	err := envelopetest.StoppedServer(t, f.master(t, f.uri("transit", "coffer"), ""),
		f.srv.Stop, callTimeout)
	assertVaultError(t, err, ErrUnreachable, "--kms-endpoint")
	assert.Contains(t, err.Error(), f.srv.Address)
}

// TestHangingServer checks the call timeout with a server that accepts
// connections and never answers.
func TestHangingServer(t *testing.T) {
	vaulttest.SetEnv(t, nil)
	old := callTimeout
	callTimeout = 300 * time.Millisecond
	t.Cleanup(func() { callTimeout = old })

	err := envelopetest.SealToHangingServer(t, "http", func(ep string) (keys.Master, error) {
		return New(context.Background(), "hcvault://vault.invalid/transit/keys/coffer", ep)
	})
	assertVaultError(t, err, ErrUnreachable, "--kms-endpoint")
}

// TestInitUnlock runs a whole volume through the master: keys.Init seals
// the ring, keys.Unlock opens it again.
func TestInitUnlock(t *testing.T) {
	f := newFixture(t)
	envelopetest.InitUnlock(t, Scheme, f.uri("transit", "coffer"), masterkey.Options{})
}

func assertVaultError(t *testing.T, err error, kind error, hint string) {
	t.Helper()
	require.Error(t, err)
	assert.ErrorIs(t, err, kind)
	var e *Error
	require.True(t, errors.As(err, &e), "%T: %v", err, err)
	assert.Contains(t, e.Hint(), hint)
	assert.Contains(t, err.Error(), "hcvault://")
	assert.NotContains(t, err.Error(), "\n")
	assert.NotContains(t, err.Error(), vaulttest.Token)
}
