package awskms

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/awskms/kmstest"
	"github.com/cofferfs/coffer/keys/internal/envelope"
	"github.com/cofferfs/coffer/keys/internal/envelope/envelopetest"
	"github.com/cofferfs/coffer/keys/masterkey"
)

var vol1, vol2 = envelopetest.Vol1, envelopetest.Vol2

// kmsFixture is a local-kms with one key, and test credentials in the
// environment.
type kmsFixture struct {
	srv *kmstest.Server
	arn string
}

func newKMSFixture(t *testing.T) *kmsFixture {
	kmstest.SetCredentials(t)
	srv := kmstest.Start(t)
	return &kmsFixture{srv: srv, arn: srv.CreateKey(t)}
}

// master opens the master for arn through the masterkey registry, as the
// CLI does.
func (f *kmsFixture) master(t *testing.T, arn string) keys.Master {
	t.Helper()
	m, err := masterkey.Open(context.Background(), keys.MasterEntry{ID: "m1", Kind: Scheme,
		URI: "aws-kms://" + arn}, masterkey.Options{KMSEndpoint: f.srv.Endpoint})
	require.NoError(t, err)
	return m
}

func TestRoundTrip(t *testing.T) {
	f := newKMSFixture(t)
	alias := f.srv.CreateAlias(t, "coffer-test", f.arn)
	payload := bytes.Repeat([]byte("ring payload "), 1000) // beyond KMS's 4 KiB Encrypt limit

	tests := []struct{ name, sealARN, openARN string }{
		{"key ARN", f.arn, f.arn},
		{"alias ARN", alias, alias},
		{"sealed by alias, opened by key ARN", alias, f.arn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ad := keys.RingAD(vol1, "m1")
			sealed, err := f.master(t, tt.sealARN).Seal(context.Background(), payload, ad)
			require.NoError(t, err)
			assert.False(t, bytes.Contains(sealed, payload[:64]), "payload in the clear")

			got, err := f.master(t, tt.openARN).Unseal(context.Background(), sealed, ad)
			require.NoError(t, err)
			assert.Equal(t, payload, got)
		})
	}
}

// TestEncryptionContext checks the documented binding with KMS itself: the
// KEK in a sealed copy decrypts under exactly the context
// {"coffer:volume": hex volume ID, "coffer:master": master ID}.
func TestEncryptionContext(t *testing.T) {
	f := newKMSFixture(t)
	sealed, err := f.master(t, f.arn).Seal(context.Background(), []byte("x"),
		keys.RingAD(vol1, "5e1f00aa"))
	require.NoError(t, err)
	blob, _, err := parseSealed(sealed)
	require.NoError(t, err)

	decrypt := func(ec map[string]string) error {
		out, err := f.srv.Client().Decrypt(context.Background(), &kms.DecryptInput{
			CiphertextBlob: blob, EncryptionContext: ec, KeyId: aws.String(f.arn)})
		if err == nil {
			assert.Len(t, out.Plaintext, 32)
		}
		return err
	}
	assert.NoError(t, decrypt(map[string]string{
		"coffer:volume": "0102030405060708090a0b0c0d0e0f10",
		"coffer:master": "5e1f00aa",
	}))
	assert.Error(t, decrypt(map[string]string{"coffer:volume": hex.EncodeToString(vol1[:])}))
	assert.Error(t, decrypt(nil))
}

func TestWrongBinding(t *testing.T) {
	f := newKMSFixture(t)
	envelopetest.WrongBinding(t, f.master(t, f.arn), f.master(t, f.srv.CreateKey(t)), nil)
}

func TestTampered(t *testing.T) {
	f := newKMSFixture(t)
	m := f.master(t, f.arn)
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
		envelopetest.Edit{Name: "header only", Edit: func(b []byte) []byte { return b[:h] }},
	)
}

func TestDisabledKey(t *testing.T) {
	f := newKMSFixture(t)
	m := f.master(t, f.arn)
	ad := keys.RingAD(vol1, "m1")
	sealed, err := m.Seal(context.Background(), []byte("ring"), ad)
	require.NoError(t, err)
	f.srv.DisableKey(t, f.arn)

	_, err = m.Seal(context.Background(), []byte("ring"), ad)
	assertKMSError(t, err, ErrKeyDisabled, "enable-key")
	_, err = m.Unseal(context.Background(), sealed, ad)
	assertKMSError(t, err, ErrKeyDisabled, "enable-key")
	assert.NotErrorIs(t, err, keys.ErrWrongKey)
}

func TestKeyNotFound(t *testing.T) {
	f := newKMSFixture(t)
	missing := "arn:aws:kms:" + kmstest.Region + ":" + kmstest.Account +
		":key/00000000-0000-0000-0000-000000000000"
	_, err := f.master(t, missing).Seal(context.Background(), []byte("ring"),
		keys.RingAD(vol1, "m1"))
	assertKMSError(t, err, ErrKeyNotFound, "check the key ARN")
}

// TestStoppedServer checks that a KMS that went away fails the unseal with
// ErrUnreachable well within the call timeout: connection refused is not
// retried for long.
func TestStoppedServer(t *testing.T) {
	f := newKMSFixture(t)
	err := envelopetest.StoppedServer(t, f.master(t, f.arn), f.srv.Stop, callTimeout)
	assertKMSError(t, err, ErrUnreachable, "--kms-endpoint")
	assert.Contains(t, err.Error(), f.srv.Endpoint)
}

// TestHangingServer checks the call timeout with a server that accepts
// connections and never answers.
func TestHangingServer(t *testing.T) {
	kmstest.SetCredentials(t)
	old := callTimeout
	callTimeout = 300 * time.Millisecond
	t.Cleanup(func() { callTimeout = old })

	err := envelopetest.SealToHangingServer(t, "http", func(ep string) (keys.Master, error) {
		return New(context.Background(), "aws-kms://arn:aws:kms:eu-west-2:111122223333:key/abc",
			ep)
	})
	assertKMSError(t, err, ErrUnreachable, "--kms-endpoint")
}

func TestNoCredentials(t *testing.T) {
	f := newKMSFixture(t)
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		t.Setenv(v, "")
	}
	m := f.master(t, f.arn)
	_, err := m.Seal(context.Background(), []byte("ring"), keys.RingAD(vol1, "m1"))
	assertKMSError(t, err, ErrCredentials, "credential chain")
}

// TestEndpointFromEnvironment checks that without --kms-endpoint the SDK
// takes the endpoint from AWS_ENDPOINT_URL_KMS, then AWS_ENDPOINT_URL.
func TestEndpointFromEnvironment(t *testing.T) {
	f := newKMSFixture(t)
	for _, v := range []string{"AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv(v, f.srv.Endpoint)
			m, err := New(context.Background(), "aws-kms://"+f.arn, "")
			require.NoError(t, err)
			ad := keys.RingAD(vol1, "m1")
			sealed, err := m.Seal(context.Background(), []byte("ring"), ad)
			require.NoError(t, err)
			got, err := m.Unseal(context.Background(), sealed, ad)
			require.NoError(t, err)
			assert.Equal(t, "ring", string(got))
		})
	}
}

// TestInitUnlock runs a whole volume through the master: keys.Init seals
// the ring, keys.Unlock opens it again.
func TestInitUnlock(t *testing.T) {
	f := newKMSFixture(t)
	envelopetest.InitUnlock(t, Scheme, "aws-kms://"+f.arn,
		masterkey.Options{KMSEndpoint: f.srv.Endpoint})
}

func assertKMSError(t *testing.T, err error, kind error, hint string) {
	t.Helper()
	require.Error(t, err)
	assert.ErrorIs(t, err, kind)
	var e *Error
	require.True(t, errors.As(err, &e), "%T: %v", err, err)
	assert.Contains(t, e.Hint(), hint)
	assert.Contains(t, err.Error(), "arn:aws:kms:")
	assert.NotContains(t, err.Error(), "\n")
}
