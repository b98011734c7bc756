package azurekv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/box"
	"github.com/cofferfs/coffer/keys/internal/envelope"
)

// SealVersion is the version of the sealed ring layout below.
const SealVersion = envelope.Version

// A sealed ring copy is laid out as
//
//	offset  size  field
//	0       1     version, SealVersion
//	1       1     v, length of the key version (1..64)
//	2       v     key version that wrapped the KEK (ASCII)
//	2+v     2     n, length of the wrapped key (big endian, 1..maxWrapped)
//	4+v     n     RSA-OAEP-256 wrapKey result of KEK (32) || SHA-256(ring AD)
//	4+v+n   24    box nonce
//	28+v+n  m     ring payload sealed with XChaCha20-Poly1305 under the KEK,
//	              associated data = the ring AD || bytes 0..4+v+n above
//	28+v+n+m 16   Poly1305 tag
const (
	maxVersion = 64
	// maxWrapped bounds the wrapped key: an RSA-OAEP result is as long as
	// the modulus, 512 bytes for the largest key Key Vault makes (4096 bits).
	maxWrapped = 1024
	// wrappedPlain is the length of the wrapped plaintext: KEK || digest.
	wrappedPlain = envelope.KEKSize + sha256.Size
)

// Call bounds. Vars so that tests can shorten them.
var (
	callTimeout = 30 * time.Second
	maxRetries  = int32(2) // three attempts in all
	retryDelay  = 500 * time.Millisecond
	maxBackoff  = 2 * time.Second
)

// Test hooks: the credential and the HTTP transport. Nil means
// DefaultAzureCredential and the SDK's default transport.
var (
	testCredential azcore.TokenCredential
	testTransport  policy.Transporter
)

// Master is a keys.Master whose key stays in Azure Key Vault. It is safe for
// concurrent use.
type Master struct {
	key      Key
	endpoint string // the vault URL the client talks to
	client   *azkeys.Client
}

var _ keys.Master = (*Master)(nil)

// New returns the Master for an azure-kv URI. endpoint, when not empty,
// overrides the vault URL. New makes no network call: an unreachable vault
// or missing credentials show in Seal and Unseal.
func New(_ context.Context, uri, endpoint string) (*Master, error) {
	k, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	vaultURL := k.VaultURL()
	if endpoint != "" {
		if err := checkEndpoint(endpoint); err != nil {
			return nil, err
		}
		vaultURL = endpoint
	}

	cred, err := credential()
	if err != nil {
		return nil, &Error{Op: "set up Azure credentials", Key: k.String(), Kind: ErrCredentials,
			Err: err}
	}
	opts := &azkeys.ClientOptions{
		ClientOptions: azcore.ClientOptions{
			Retry: policy.RetryOptions{MaxRetries: maxRetries, RetryDelay: retryDelay,
				MaxRetryDelay: maxBackoff, TryTimeout: callTimeout},
			Transport: testTransport,
		},
		DisableChallengeResourceVerification: !verifyChallenge(vaultURL),
	}
	client, err := azkeys.NewClient(vaultURL, credTagger{cred}, opts)
	if err != nil {
		return nil, fmt.Errorf("failed to create the Key Vault client for %s: %w", k, err)
	}
	return &Master{key: k, endpoint: vaultURL, client: client}, nil
}

// verifyChallenge reports whether the SDK should check that the resource
// of the server's challenge matches the host of vaultURL: whenever that host
// is a vault's, which every host an azure-kv URI names is. A private
// endpoint's host (--kms-endpoint) is not, so no resource could match it;
// credTagger still gets tokens for Key Vault only.
func verifyChallenge(vaultURL string) bool {
	u, err := url.Parse(vaultURL)
	return err == nil && isVaultHost(strings.ToLower(u.Hostname()))
}

func credential() (azcore.TokenCredential, error) {
	if testCredential != nil {
		return testCredential, nil
	}
	return azidentity.NewDefaultAzureCredential(nil)
}

// Seal draws a fresh KEK, has Key Vault wrap it with the digest of
// associatedData, and seals plaintext with it.
func (m *Master) Seal(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	if err := envelope.CheckRingAD(Scheme, associatedData); err != nil {
		return nil, err
	}
	return envelope.Seal(ctx, plaintext, associatedData, func(kek []byte) ([]byte, error) {
		digest := sha256.Sum256(associatedData)
		in := append(append(make([]byte, 0, wrappedPlain), kek...), digest[:]...)
		defer clear(in)
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		alg := azkeys.EncryptionAlgorithmRSAOAEP256
		resp, err := m.client.WrapKey(ctx, m.key.Name, m.key.Version,
			azkeys.KeyOperationParameters{Algorithm: &alg, Value: in}, nil)
		if err != nil {
			return nil, m.callError("wrap", err)
		}
		return m.header(resp.KID, resp.Result)
	})
}

// header checks the answer of wrapKey and returns the header of the sealed
// copy.
func (m *Master) header(kid *azkeys.ID, wrapped []byte) ([]byte, error) {
	version := m.key.Version
	if kid != nil {
		version = kid.Version()
	}
	if n := len(wrapped); n == 0 || n > maxWrapped {
		return nil, fmt.Errorf("Key Vault key %s returned a wrapped key of %d bytes", m.key, n)
	}
	if version == "" || len(version) > maxVersion {
		return nil, fmt.Errorf("Key Vault key %s returned no usable key version (kid %q)",
			m.key, kidString(kid))
	}

	head := make([]byte, 0, 4+len(version)+len(wrapped))
	head = append(head, SealVersion, byte(len(version)))
	head = append(head, version...)
	head = binary.BigEndian.AppendUint16(head, uint16(len(wrapped)))
	return append(head, wrapped...), nil
}

// Unseal has Key Vault unwrap the KEK with the recorded key version, checks
// the digest of associatedData that came with it and opens the ring. A copy
// sealed for another volume, master ID or key, or altered, fails with
// keys.ErrWrongKey.
func (m *Master) Unseal(ctx context.Context, sealed, associatedData []byte) ([]byte, error) {
	if err := envelope.CheckRingAD(Scheme, associatedData); err != nil {
		return nil, err
	}
	version, wrapped, boxed, err := parseSealed(sealed)
	if err != nil {
		return nil, err
	}
	if m.key.Version != "" && m.key.Version != version {
		return nil, fmt.Errorf("%w: the sealed ring was wrapped by version %s of Key Vault "+
			"key %s, not the version the URI names", keys.ErrWrongKey, version, m.key)
	}

	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	alg := azkeys.EncryptionAlgorithmRSAOAEP256
	resp, err := m.client.UnwrapKey(ctx, m.key.Name, version,
		azkeys.KeyOperationParameters{Algorithm: &alg, Value: wrapped}, nil)
	if err != nil {
		return nil, m.callError("unwrap", err)
	}
	out := resp.Result
	defer clear(out)
	digest := sha256.Sum256(associatedData)
	if len(out) != wrappedPlain ||
		subtle.ConstantTimeCompare(out[envelope.KEKSize:], digest[:]) != 1 {
		return nil, fmt.Errorf("%w: Key Vault key %s unwrapped a key bound to another volume "+
			"or master ID", keys.ErrWrongKey, m.key)
	}
	kek := keys.SecretFromBytes(bytes.Clone(out[:envelope.KEKSize]))
	return envelope.Open(ctx, kek, sealed, boxed, associatedData)
}

// parseSealed splits a sealed copy into the key version, the wrapped key
// and the box.
func parseSealed(sealed []byte) (version string, wrapped, boxed []byte, err error) {
	if err := envelope.CheckVersion(Scheme, sealed, 2); err != nil {
		return "", nil, nil, err
	}
	v := int(sealed[1])
	if v == 0 || v > maxVersion || len(sealed) < 4+v {
		return "", nil, nil, fmt.Errorf("%w: sealed ring is malformed (key version of %d "+
			"bytes in %d)", keys.ErrWrongKey, v, len(sealed))
	}
	version = string(sealed[2 : 2+v])
	n := int(binary.BigEndian.Uint16(sealed[2+v:]))
	if n == 0 || n > maxWrapped || len(sealed) < 4+v+n+box.Overhead || !isName(version) {
		return "", nil, nil, fmt.Errorf("%w: sealed ring is malformed (wrapped key of %d "+
			"bytes in %d)", keys.ErrWrongKey, n, len(sealed))
	}
	return version, sealed[4+v : 4+v+n], sealed[4+v+n:], nil
}

func kidString(id *azkeys.ID) string {
	if id == nil {
		return ""
	}
	return path.Base(string(*id))
}
