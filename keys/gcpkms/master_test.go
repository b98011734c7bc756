package gcpkms

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/gcpkms/gcpkmstest"
	"github.com/cofferfs/coffer/keys/internal/envelope"
	"github.com/cofferfs/coffer/keys/internal/envelope/envelopetest"
	"github.com/cofferfs/coffer/keys/masterkey"
)

var vol1, vol2 = envelopetest.Vol1, envelopetest.Vol2

type fixture struct {
	srv  *gcpkmstest.Server
	name string
}

// newFixture starts the stand-in with one key and points the Application
// Default Credentials at its service account.
func newFixture(t *testing.T) *fixture {
	srv := gcpkmstest.Start(t)
	srv.WriteCredentials(t)
	return &fixture{srv: srv, name: srv.CreateKey(t, "coffer-test", "europe-west1", "coffer",
		"ring")}
}

// master opens the master for name through the masterkey registry, as the
// CLI does.
func (f *fixture) master(t *testing.T, name string) keys.Master {
	t.Helper()
	m, err := masterkey.Open(context.Background(), keys.MasterEntry{ID: "m1", Kind: Scheme,
		URI: "gcp-kms://" + name}, masterkey.Options{KMSEndpoint: f.srv.URL})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.(*Master).Close() })
	return m
}

func TestRoundTrip(t *testing.T) {
	f := newFixture(t)
	payload := bytes.Repeat([]byte("ring payload "), 10000) // beyond KMS's 64 KiB limit
	ad := keys.RingAD(vol1, "m1")
	m := f.master(t, f.name)
	sealed, err := m.Seal(context.Background(), payload, ad)
	require.NoError(t, err)
	assert.False(t, bytes.Contains(sealed, payload[:64]), "payload in the clear")

	got, err := f.master(t, f.name).Unseal(context.Background(), sealed, ad)
	require.NoError(t, err)
	assert.Equal(t, payload, got)
	assert.Equal(t, 1, f.srv.Requests("encrypt"))
	assert.Equal(t, 1, f.srv.Requests("decrypt"))

	// After a rotation, Cloud KMS decrypts with the version that encrypted.
	f.srv.Rotate(t, f.name)
	got, err = m.Unseal(context.Background(), sealed, ad)
	require.NoError(t, err)
	assert.Equal(t, payload, got)
}

// TestAAD checks the documented binding with the server's own key: the KEK
// in a sealed copy decrypts under exactly the ring AD.
func TestAAD(t *testing.T) {
	f := newFixture(t)
	ad := keys.RingAD(vol1, "5e1f00aa")
	sealed, err := f.master(t, f.name).Seal(context.Background(), []byte("x"), ad)
	require.NoError(t, err)
	blob, _, err := parseSealed(sealed)
	require.NoError(t, err)

	want := append([]byte("coffer-ring-v1\x00"), vol1[:]...)
	want = append(want, "5e1f00aa"...)
	kek, err := f.srv.Decrypt(f.name, blob, want)
	require.NoError(t, err)
	assert.Len(t, kek, 32)
	_, err = f.srv.Decrypt(f.name, blob, keys.RingAD(vol2, "5e1f00aa"))
	assert.Error(t, err)
	_, err = f.srv.Decrypt(f.name, blob, nil)
	assert.Error(t, err)
}

func TestWrongBinding(t *testing.T) {
	f := newFixture(t)
	other := f.srv.CreateKey(t, "coffer-test", "europe-west1", "coffer", "other")
	envelopetest.WrongBinding(t, f.master(t, f.name), f.master(t, other),
		func(t *testing.T, err error) { assert.Contains(t, err.Error(), "INVALID_ARGUMENT") })
}

func TestTampered(t *testing.T) {
	f := newFixture(t)
	m := f.master(t, f.name)
	ad := keys.RingAD(vol1, "m1")
	sealed, err := m.Seal(context.Background(), []byte("ring payload"), ad)
	require.NoError(t, err)
	blob, _, err := parseSealed(sealed)
	require.NoError(t, err)
	h := envelope.HeaderSize

	envelopetest.Tampered(t, m, sealed, ad, h+len(blob),
		envelopetest.Edit{Name: "length field", Edit: func(b []byte) []byte { b[2] ^= 1; return b }},
		envelopetest.Edit{Name: "KMS ciphertext",
			Edit: func(b []byte) []byte { b[h+len(blob)/2] ^= 1; return b }},
		envelopetest.Edit{Name: "KMS ciphertext version",
			Edit: func(b []byte) []byte { b[h+3] ^= 1; return b }},
		envelopetest.Edit{Name: "header only", Edit: func(b []byte) []byte { return b[:h] }},
	)
}

// TestErrorResponses runs each documented error answer through Seal and
// Unseal: one error with the right cause and hint.
func TestErrorResponses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fixture) string // returns the key name to use
		kind  error
		hint  string
	}{
		{"disabled version", func(f *fixture) string {
			f.srv.SetState(f.name, 1, gcpkmstest.Disabled)
			return f.name
		}, ErrKeyDisabled, "versions enable"},
		{"destroyed version", func(f *fixture) string {
			f.srv.SetState(f.name, 1, gcpkmstest.Destroyed)
			return f.name
		}, ErrKeyState, "versions list"},
		{"wrong purpose", func(f *fixture) string {
			f.srv.SetPurpose(f.name, "ASYMMETRIC_SIGN")
			return f.name
		}, ErrKeyState, "ENCRYPT_DECRYPT"},
		{"permission denied", func(f *fixture) string {
			f.srv.Deny(f.name)
			return f.name
		}, ErrAccessDenied, "cryptoKeyEncrypterDecrypter"},
		{"not found", func(*fixture) string {
			return "projects/coffer-test/locations/europe-west1/keyRings/coffer/cryptoKeys/gone"
		}, ErrKeyNotFound, "check the project"},
		{"unknown project", func(*fixture) string {
			return "projects/elsewhere/locations/europe-west1/keyRings/coffer/cryptoKeys/k"
		}, ErrAccessDenied, "cryptoKeyEncrypterDecrypter"},
		{"throttled", func(f *fixture) string {
			f.srv.FailNext(2*maxAttempts, 429, "RESOURCE_EXHAUSTED")
			return f.name
		}, ErrThrottled, "quota"},
		{"unavailable", func(f *fixture) string {
			f.srv.FailNext(2*maxAttempts, 503, "UNAVAILABLE")
			return f.name
		}, ErrUnavailable, "try again later"},
		{"internal", func(f *fixture) string {
			f.srv.FailNext(2*maxAttempts, 500, "INTERNAL")
			return f.name
		}, ErrUnavailable, "try again later"},
	}
	shortBackoff(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ad := keys.RingAD(vol1, "m1")
			sealed, err := f.master(t, f.name).Seal(context.Background(), []byte("ring"), ad)
			require.NoError(t, err)
			m := f.master(t, tt.setup(f))

			_, err = m.Seal(context.Background(), []byte("ring"), ad)
			assertKMSError(t, err, tt.kind, tt.hint)
			_, err = m.Unseal(context.Background(), sealed, ad)
			assertKMSError(t, err, tt.kind, tt.hint)
			assert.NotErrorIs(t, err, keys.ErrWrongKey)
		})
	}
}

// TestRetried checks that throttling and server failures are retried, up
// to maxAttempts, and that the call then succeeds.
func TestRetried(t *testing.T) {
	shortBackoff(t)
	for _, tt := range []struct {
		status int
		code   string
	}{{429, "RESOURCE_EXHAUSTED"}, {503, "UNAVAILABLE"}} {
		t.Run(tt.code, func(t *testing.T) {
			f := newFixture(t)
			m := f.master(t, f.name)
			ad := keys.RingAD(vol1, "m1")
			f.srv.FailNext(maxAttempts-1, tt.status, tt.code)
			sealed, err := m.Seal(context.Background(), []byte("ring"), ad)
			require.NoError(t, err)
			assert.Equal(t, maxAttempts, f.srv.Requests("encrypt"))

			f.srv.FailNext(maxAttempts-1, tt.status, tt.code)
			got, err := m.Unseal(context.Background(), sealed, ad)
			require.NoError(t, err)
			assert.Equal(t, "ring", string(got))
			assert.Equal(t, maxAttempts, f.srv.Requests("decrypt"))
		})
	}
	t.Run("not retried", func(t *testing.T) {
		f := newFixture(t)
		f.srv.Deny(f.name)
		_, err := f.master(t, f.name).Seal(context.Background(), []byte("ring"),
			keys.RingAD(vol1, "m1"))
		assertKMSError(t, err, ErrAccessDenied, "")
		assert.Equal(t, 1, f.srv.Requests("encrypt"))
	})
}

// TestCorruptedAnswer checks the client side of the CRC32C protocol: an
// answer whose data does not match its checksum is refused.
func TestCorruptedAnswer(t *testing.T) {
	f := newFixture(t)
	m := f.master(t, f.name)
	ad := keys.RingAD(vol1, "m1")
	f.srv.CorruptNext()
	_, err := m.Seal(context.Background(), []byte("ring"), ad)
	assertKMSError(t, err, ErrCorrupted, "corrupted")

	sealed, err := m.Seal(context.Background(), []byte("ring"), ad)
	require.NoError(t, err)
	f.srv.CorruptNext()
	_, err = m.Unseal(context.Background(), sealed, ad)
	assertKMSError(t, err, ErrCorrupted, "corrupted")
}

// TestStoppedServer checks that a Cloud KMS that went away fails the
// unseal with ErrUnreachable well within the call timeout.
func TestStoppedServer(t *testing.T) {
	f := newFixture(t)
	err := envelopetest.StoppedServer(t, f.master(t, f.name), f.srv.Stop, callTimeout)
	assertKMSError(t, err, ErrUnreachable, "--kms-endpoint")
	assert.Contains(t, err.Error(), f.srv.URL)
}

// TestHangingServer checks the call timeout with a server that accepts
// connections and never answers.
func TestHangingServer(t *testing.T) {
	srv := gcpkmstest.Start(t)
	srv.WriteCredentials(t)
	old := callTimeout
	callTimeout = 300 * time.Millisecond
	t.Cleanup(func() { callTimeout = old })

	err := envelopetest.SealToHangingServer(t, "http", func(ep string) (keys.Master, error) {
		return New(context.Background(), "gcp-kms://projects/coffer-test/locations/global/"+
			"keyRings/r/cryptoKeys/k", ep)
	})
	assertKMSError(t, err, ErrUnreachable, "--kms-endpoint")
}

// TestCredentials checks that the client takes its credentials from
// GOOGLE_APPLICATION_CREDENTIALS, and the errors without usable ones.
func TestCredentials(t *testing.T) {
	t.Run("from GOOGLE_APPLICATION_CREDENTIALS", func(t *testing.T) {
		f := newFixture(t)
		_, err := f.master(t, f.name).Seal(context.Background(), []byte("ring"),
			keys.RingAD(vol1, "m1"))
		require.NoError(t, err)
		assert.Equal(t, 1, f.srv.Requests("token"))
	})
	t.Run("token endpoint down", func(t *testing.T) {
		f := newFixture(t)
		other := gcpkmstest.Start(t)
		path := other.WriteCredentials(t)
		other.Stop()
		t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", path)
		_, err := f.master(t, f.name).Seal(context.Background(), []byte("ring"),
			keys.RingAD(vol1, "m1"))
		assertKMSError(t, err, ErrUnreachable, "token endpoint")
		assert.Contains(t, err.Error(), "fetching an access token")
		assert.Zero(t, f.srv.Requests("encrypt"))
	})
	t.Run("missing file", func(t *testing.T) {
		f := newFixture(t)
		t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(t.TempDir(), "missing.json"))
		_, err := f.master(t, f.name).Seal(context.Background(), []byte("ring"),
			keys.RingAD(vol1, "m1"))
		assertKMSError(t, err, ErrCredentials, "GOOGLE_APPLICATION_CREDENTIALS")
		assert.Zero(t, f.srv.Requests("encrypt"))
	})
	t.Run("key not trusted by the token endpoint", func(t *testing.T) {
		f := newFixture(t)
		other := gcpkmstest.Start(t)
		path := other.WriteCredentials(t) // signed by a key f.srv does not know
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		b = bytes.ReplaceAll(b, []byte(other.URL), []byte(f.srv.URL))
		require.NoError(t, os.WriteFile(path, b, 0o600))
		_, err = f.master(t, f.name).Seal(context.Background(), []byte("ring"),
			keys.RingAD(vol1, "m1"))
		assertKMSError(t, err, ErrCredentials, "Application Default Credentials")
		assert.Zero(t, f.srv.Requests("encrypt"))
	})
	t.Run("no credentials anywhere", func(t *testing.T) {
		srv := gcpkmstest.Start(t)
		gcpkmstest.Isolate(t)
		// A metadata server that has no service account for this
		// machine, as on an instance created without one.
		t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(srv.URL, "http://"))
		m, err := New(context.Background(), "gcp-kms://projects/coffer-test/locations/global/"+
			"keyRings/r/cryptoKeys/k", srv.URL)
		require.NoError(t, err)
		_, err = m.Seal(context.Background(), []byte("ring"), keys.RingAD(vol1, "m1"))
		assertKMSError(t, err, ErrCredentials, "GOOGLE_APPLICATION_CREDENTIALS")
		assert.Zero(t, srv.Requests("encrypt"))
	})
}

// TestInitUnlock runs a whole volume through the master: keys.Init seals
// the ring, keys.Unlock opens it again.
func TestInitUnlock(t *testing.T) {
	f := newFixture(t)
	envelopetest.InitUnlock(t, Scheme, "gcp-kms://"+f.name,
		masterkey.Options{KMSEndpoint: f.srv.URL})
}

func shortBackoff(t *testing.T) {
	old1, old2 := firstBackoff, maxBackoff
	firstBackoff, maxBackoff = time.Millisecond, 10*time.Millisecond
	t.Cleanup(func() { firstBackoff, maxBackoff = old1, old2 })
}

func assertKMSError(t *testing.T, err error, kind error, hint string) {
	t.Helper()
	require.Error(t, err)
	assert.ErrorIs(t, err, kind)
	var e *Error
	require.True(t, errors.As(err, &e), "%T: %v", err, err)
	assert.Contains(t, e.Hint(), hint)
	assert.Contains(t, err.Error(), "cryptoKeys/")
	assert.NotContains(t, err.Error(), "\n")
	assert.NotContains(t, err.Error(), "ya29.")
}
