package awskms

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/envelope"
)

// SealVersion is the version of the sealed ring layout.
const SealVersion = envelope.Version

// layout is the layout of a sealed ring copy, drawn at envelope.Layout and
// in docs/format.md: version SealVersion, the length of the KMS ciphertext
// (1..maxBlob), the KMS ciphertext of the 32-byte KEK under the encryption
// context {"coffer:volume": hex volume ID, "coffer:master": master ID}, and
// the box of the ring payload under the KEK, whose associated data is the
// ring AD followed by all that comes before the box.
var layout = envelope.Layout{Kind: Scheme, Blob: "KMS ciphertext", MaxBlob: maxBlob}

// maxBlob bounds the KMS ciphertext: KMS ciphertexts of a 32-byte plaintext
// are under 200 bytes; KMS itself caps them at 6144.
const maxBlob = 6144

// Encryption context keys. KMS checks them on Decrypt, logs them in
// CloudTrail, and key policies can require them (kms:EncryptionContext:…).
const (
	ContextVolume = "coffer:volume"
	ContextMaster = "coffer:master"
)

// Call bounds. A var so that tests can shorten the timeout.
var (
	callTimeout = 30 * time.Second
	maxAttempts = 3
	maxBackoff  = 2 * time.Second
)

// Master is a keys.Master whose key stays in AWS KMS. It is safe for
// concurrent use.
type Master struct {
	key      Key
	endpoint string // for error messages; "" when the SDK picks it
	creds    aws.CredentialsProvider
	client   *kms.Client
}

var _ keys.Master = (*Master)(nil)

// New returns the Master for an aws-kms URI. endpoint, when not empty,
// overrides the KMS endpoint (for a local or private KMS). New makes no
// network call: an unreachable KMS or missing credentials show in Seal and
// Unseal.
func New(ctx context.Context, uri, endpoint string) (*Master, error) {
	k, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if endpoint != "" {
		if err := checkEndpoint(endpoint); err != nil {
			return nil, err
		}
	}

	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion(k.Region),
		config.WithRetryer(func() aws.Retryer {
			r := retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = maxAttempts })
			return retry.AddWithMaxBackoffDelay(r, maxBackoff)
		}),
	)
	if err != nil {
		return nil, &Error{Op: "load AWS configuration", Key: k.ARN, Kind: ErrCredentials,
			Err: err}
	}
	client := kms.NewFromConfig(cfg, func(o *kms.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
	if endpoint == "" && client.Options().BaseEndpoint != nil {
		endpoint = *client.Options().BaseEndpoint
	}
	return &Master{key: k, endpoint: endpoint, creds: cfg.Credentials, client: client}, nil
}

// Seal draws a fresh KEK, has KMS encrypt it under the encryption context
// taken from associatedData, and seals plaintext with it.
func (m *Master) Seal(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	ec, err := encryptionContext(associatedData)
	if err != nil {
		return nil, err
	}
	return envelope.Seal(ctx, plaintext, associatedData, func(kek []byte) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		if err := m.checkCredentials(ctx, "encrypt"); err != nil {
			return nil, err
		}
		out, err := m.client.Encrypt(ctx, &kms.EncryptInput{
			KeyId:             aws.String(m.key.ARN),
			Plaintext:         kek,
			EncryptionContext: ec,
		})
		if err != nil {
			return nil, m.callError("encrypt", err)
		}
		if n := len(out.CiphertextBlob); n == 0 || n > maxBlob {
			return nil, fmt.Errorf("KMS key %s returned a ciphertext of %d bytes", m.key.ARN, n)
		}
		return layout.Header(out.CiphertextBlob), nil
	})
}

// Unseal has KMS decrypt the KEK under the encryption context taken from
// associatedData and opens the ring with it. A copy sealed for another
// volume, master ID or KMS key, or altered, fails with keys.ErrWrongKey.
func (m *Master) Unseal(ctx context.Context, sealed, associatedData []byte) ([]byte, error) {
	ec, err := encryptionContext(associatedData)
	if err != nil {
		return nil, err
	}
	blob, boxed, err := parseSealed(sealed)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := m.checkCredentials(ctx, "decrypt"); err != nil {
		return nil, err
	}
	out, err := m.client.Decrypt(ctx, &kms.DecryptInput{
		KeyId:             aws.String(m.key.ARN),
		CiphertextBlob:    blob,
		EncryptionContext: ec,
	})
	if err != nil {
		return nil, m.callError("decrypt", err)
	}
	kek := keys.SecretFromBytes(out.Plaintext)
	if n := kek.Len(); n != envelope.KEKSize {
		kek.Wipe()
		return nil, fmt.Errorf("%w: KMS key %s decrypted a %d-byte KEK, want %d",
			keys.ErrWrongKey, m.key.ARN, n, envelope.KEKSize)
	}
	return envelope.Open(ctx, kek, sealed, boxed, associatedData)
}

// checkCredentials fetches the credentials before a call, so that a broken
// credential chain is told apart from a KMS failure. The SDK caches them:
// the call that follows reuses them.
func (m *Master) checkCredentials(ctx context.Context, op string) error {
	if m.creds == nil {
		return &Error{Op: op, Key: m.key.ARN, Kind: ErrCredentials,
			Err: errors.New("no credential provider is configured")}
	}
	if _, err := m.creds.Retrieve(ctx); err != nil {
		return &Error{Op: op, Key: m.key.ARN, Kind: ErrCredentials, Err: err}
	}
	return nil
}

// parseSealed splits a sealed copy into the KMS ciphertext and the box.
func parseSealed(sealed []byte) (blob, boxed []byte, err error) { return layout.Parse(sealed) }

// encryptionContext decodes the ring AD into the KMS encryption context.
func encryptionContext(ad []byte) (map[string]string, error) {
	vol, master, err := envelope.SplitRingAD(Scheme, ad)
	if err != nil {
		return nil, err
	}
	return map[string]string{
		ContextVolume: hex.EncodeToString(vol[:]),
		ContextMaster: master,
	}, nil
}
