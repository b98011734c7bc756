package awskms

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/box"
)

// SealVersion is the version of the sealed ring layout below.
const SealVersion = 1

// A sealed ring copy is laid out as
//
//	offset  size  field
//	0       1     version, SealVersion
//	1       2     n, length of the KMS ciphertext (big endian, 1..maxBlob)
//	3       n     KMS ciphertext of the 32-byte KEK, under the encryption
//	              context {"coffer:volume": hex volume ID,
//	              "coffer:master": master ID}
//	3+n     24    box nonce
//	27+n    m     ring payload sealed with XChaCha20-Poly1305 under the KEK,
//	              associated data = the ring AD || bytes 0..3+n above
//	27+n+m  16    Poly1305 tag
const (
	headerSize = 3
	// maxBlob bounds the KMS ciphertext: KMS ciphertexts of a 32-byte
	// plaintext are under 200 bytes; KMS itself caps them at 6144.
	maxBlob = 6144
)

// Encryption context keys. KMS checks them on Decrypt, logs them in
// CloudTrail, and key policies can require them (kms:EncryptionContext:…).
const (
	ContextVolume = "coffer:volume"
	ContextMaster = "coffer:master"
)

// ringADPrefix starts the associated data that keys passes to Seal and
// Unseal: "coffer-ring-v1\x00" || volume ID (16 bytes) || master ID.
const ringADPrefix = "coffer-ring-v1\x00"

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
	kek, err := keys.RandomSecret(box.KeySize)
	if err != nil {
		return nil, err
	}
	b, err := box.New(kek) // b owns kek now
	if err != nil {
		kek.Wipe()
		return nil, err
	}
	defer b.Wipe()

	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := m.checkCredentials(ctx, "encrypt"); err != nil {
		return nil, err
	}
	out, err := m.client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(m.key.ARN),
		Plaintext:         kek.InsecureBytes(),
		EncryptionContext: ec,
	})
	if err != nil {
		return nil, m.callError("encrypt", err)
	}
	if n := len(out.CiphertextBlob); n == 0 || n > maxBlob {
		return nil, fmt.Errorf("KMS key %s returned a ciphertext of %d bytes", m.key.ARN, n)
	}

	head := make([]byte, headerSize, headerSize+len(out.CiphertextBlob))
	head[0] = SealVersion
	binary.BigEndian.PutUint16(head[1:], uint16(len(out.CiphertextBlob)))
	head = append(head, out.CiphertextBlob...)
	boxed, err := b.Seal(ctx, plaintext, boxAD(associatedData, head))
	if err != nil {
		return nil, err
	}
	return append(head, boxed...), nil
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
	if n := kek.Len(); n != box.KeySize {
		kek.Wipe()
		return nil, fmt.Errorf("%w: KMS key %s decrypted a %d-byte KEK, want %d",
			keys.ErrWrongKey, m.key.ARN, n, box.KeySize)
	}
	b, err := box.New(kek)
	if err != nil {
		return nil, err
	}
	defer b.Wipe()
	return b.Unseal(ctx, boxed, boxAD(associatedData, sealed[:len(sealed)-len(boxed)]))
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
func parseSealed(sealed []byte) (blob, boxed []byte, err error) {
	if len(sealed) < headerSize {
		return nil, nil, fmt.Errorf("%w: sealed ring is %d bytes, too short", keys.ErrWrongKey,
			len(sealed))
	}
	if v := sealed[0]; v != SealVersion {
		return nil, nil, fmt.Errorf("%w: aws-kms sealed ring version %d (this coffer reads %d)",
			keys.ErrUnsupportedVersion, v, SealVersion)
	}
	n := int(binary.BigEndian.Uint16(sealed[1:]))
	if n == 0 || n > maxBlob || len(sealed) < headerSize+n+box.Overhead {
		return nil, nil, fmt.Errorf("%w: sealed ring is malformed (KMS ciphertext of %d bytes "+
			"in %d)", keys.ErrWrongKey, n, len(sealed))
	}
	return sealed[headerSize : headerSize+n], sealed[headerSize+n:], nil
}

// boxAD is the associated data of the box: the ring AD followed by the
// header and KMS ciphertext, so that no byte of a sealed copy can change
// unnoticed, even one that KMS would ignore.
func boxAD(ringAD, head []byte) []byte {
	return append(append(make([]byte, 0, len(ringAD)+len(head)), ringAD...), head...)
}

// encryptionContext decodes the ring AD into the KMS encryption context.
func encryptionContext(ad []byte) (map[string]string, error) {
	const idLen = len(keys.VolumeID{})
	s := string(ad)
	if len(s) <= len(ringADPrefix)+idLen || s[:len(ringADPrefix)] != ringADPrefix {
		return nil, fmt.Errorf("aws-kms: associated data is not a ring AD")
	}
	vol := hex.EncodeToString(ad[len(ringADPrefix) : len(ringADPrefix)+idLen])
	return map[string]string{
		ContextVolume: vol,
		ContextMaster: s[len(ringADPrefix)+idLen:],
	}, nil
}
