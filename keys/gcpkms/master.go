package gcpkms

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/envelope"
)

// SealVersion is the version of the sealed ring layout.
const SealVersion = envelope.Version

// layout is the layout of a sealed ring copy, drawn at envelope.Layout and
// in docs/format.md: version SealVersion, the length of the Cloud KMS
// ciphertext (1..maxBlob), the Cloud KMS ciphertext of the 32-byte KEK
// encrypted with additionalAuthenticatedData = the ring AD
// ("coffer-ring-v1\0" || volume ID || master ID), and the box of the ring
// payload under the KEK, whose associated data is the ring AD followed by
// all that comes before the box.
var layout = envelope.Layout{Kind: Scheme, Blob: "KMS ciphertext", MaxBlob: maxBlob}

// maxBlob bounds the Cloud KMS ciphertext: that of a 32-byte plaintext is
// about a hundred bytes.
const maxBlob = 8192

// Call bounds. Vars so that tests can shorten them.
var (
	callTimeout  = 30 * time.Second
	maxAttempts  = 3
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 2 * time.Second
)

// quiet is the logger given to the Google client libraries. They log
// request and response bodies at debug level when GOOGLE_SDK_GO_LOGGING_LEVEL
// asks for it, and those bodies hold the KEK and access tokens: a logger of
// our own that discards everything keeps that switch from reaching them.
var quiet = slog.New(slog.DiscardHandler)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) int64 { return int64(crc32.Checksum(b, castagnoli)) }

// Master is a keys.Master whose key stays in Cloud KMS. It is safe for
// concurrent use.
type Master struct {
	key      Key
	endpoint string // for error messages; "" for Google's endpoint

	mu     sync.Mutex
	creds  *auth.Credentials
	client *kms.KeyManagementClient
}

var _ keys.Master = (*Master)(nil)

// New returns the Master for a gcp-kms URI. endpoint, when not empty,
// overrides the Cloud KMS endpoint. New makes no network call and reads no
// credentials: both happen on the first Seal or Unseal.
func New(_ context.Context, uri, endpoint string) (*Master, error) {
	k, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if endpoint != "" {
		if err := checkEndpoint(endpoint); err != nil {
			return nil, err
		}
	}
	return &Master{key: k, endpoint: endpoint}, nil
}

// kmsClient returns the REST client, making it on first use with the
// Application Default Credentials. It fetches an access token before each
// call, so that broken credentials are told apart from a KMS failure; the
// credentials cache the token and the call reuses it.
func (m *Master) kmsClient(ctx context.Context, op string) (*kms.KeyManagementClient, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.creds == nil {
		creds, err := credentials.DetectDefault(&credentials.DetectOptions{
			Scopes: kms.DefaultAuthScopes(), Logger: quiet})
		if err != nil {
			return nil, &Error{Op: op, Key: m.key.Name, Kind: ErrCredentials, Err: err}
		}
		m.creds = creds
	}
	if _, err := m.creds.Token(ctx); err != nil {
		kind := ErrCredentials
		var netErr net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) {
			kind = ErrUnreachable // the token endpoint or metadata server
		}
		return nil, &Error{Op: op + " (fetching an access token)", Key: m.key.Name, Kind: kind,
			Err: err}
	}
	if m.client != nil {
		return m.client, nil
	}
	opts := []option.ClientOption{option.WithAuthCredentials(m.creds), option.WithLogger(quiet)}
	if m.endpoint != "" {
		opts = append(opts, option.WithEndpoint(m.endpoint))
	}
	c, err := kms.NewKeyManagementRESTClient(ctx, opts...)
	if err != nil {
		return nil, &Error{Op: op, Key: m.key.Name, Kind: ErrCredentials, Err: err}
	}
	m.client = c
	return c, nil
}

// callOptions bound the retries of one call: at most maxAttempts, and only
// on throttling and server-side failures.
func callOptions() []gax.CallOption {
	return []gax.CallOption{gax.WithRetry(func() gax.Retryer {
		return &retryer{backoff: gax.Backoff{Initial: firstBackoff, Max: maxBackoff,
			Multiplier: 2}}
	})}
}

type retryer struct {
	attempts int
	backoff  gax.Backoff
}

func (r *retryer) Retry(err error) (time.Duration, bool) {
	r.attempts++
	if r.attempts >= maxAttempts || !retryable(err) {
		return 0, false
	}
	return r.backoff.Pause(), true
}

// Seal draws a fresh KEK, has Cloud KMS encrypt it with the ring AD as
// additional authenticated data, and seals plaintext with it.
func (m *Master) Seal(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	if err := envelope.CheckRingAD(Scheme, associatedData); err != nil {
		return nil, err
	}
	return envelope.Seal(ctx, plaintext, associatedData, func(kek []byte) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		blob, err := m.encrypt(ctx, kek, associatedData)
		if err != nil {
			return nil, err
		}
		return layout.Header(blob), nil
	})
}

// encrypt has Cloud KMS encrypt kek under the ring AD and checks the
// answer.
func (m *Master) encrypt(ctx context.Context, kek, associatedData []byte) ([]byte, error) {
	c, err := m.kmsClient(ctx, "encrypt")
	if err != nil {
		return nil, err
	}
	resp, err := c.Encrypt(ctx, &kmspb.EncryptRequest{
		Name:                              m.key.Name,
		Plaintext:                         kek,
		PlaintextCrc32C:                   wrapperspb.Int64(crc32c(kek)),
		AdditionalAuthenticatedData:       associatedData,
		AdditionalAuthenticatedDataCrc32C: wrapperspb.Int64(crc32c(associatedData)),
	}, callOptions()...)
	if err != nil {
		return nil, m.callError("encrypt", err)
	}
	// Integrity checks of the response, as documented for Encrypt: the
	// service saw our checksums, and the ciphertext arrived intact.
	switch {
	case !resp.GetVerifiedPlaintextCrc32C() || !resp.GetVerifiedAdditionalAuthenticatedDataCrc32C():
		return nil, m.corrupt("encrypt", "the service did not confirm the request checksums")
	case resp.GetCiphertextCrc32C() == nil ||
		resp.GetCiphertextCrc32C().GetValue() != crc32c(resp.GetCiphertext()):
		return nil, m.corrupt("encrypt", "the ciphertext does not match its CRC32C checksum")
	case !strings.HasPrefix(resp.GetName(), m.key.Name+"/cryptoKeyVersions/"):
		return nil, m.corrupt("encrypt", fmt.Sprintf("the answer names key version %q, "+
			"not one of this key", resp.GetName()))
	}
	blob := resp.GetCiphertext()
	if n := len(blob); n == 0 || n > maxBlob {
		return nil, fmt.Errorf("cloud KMS key %s returned a ciphertext of %d bytes",
			m.key.Name, n)
	}
	return blob, nil
}

// Unseal has Cloud KMS decrypt the KEK under the ring AD and opens the ring
// with it. A copy sealed for another volume, master ID or key, or altered,
// fails with keys.ErrWrongKey.
func (m *Master) Unseal(ctx context.Context, sealed, associatedData []byte) ([]byte, error) {
	if err := envelope.CheckRingAD(Scheme, associatedData); err != nil {
		return nil, err
	}
	blob, boxed, err := parseSealed(sealed)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	c, err := m.kmsClient(ctx, "decrypt")
	if err != nil {
		return nil, err
	}
	resp, err := c.Decrypt(ctx, &kmspb.DecryptRequest{
		Name:                              m.key.Name,
		Ciphertext:                        blob,
		CiphertextCrc32C:                  wrapperspb.Int64(crc32c(blob)),
		AdditionalAuthenticatedData:       associatedData,
		AdditionalAuthenticatedDataCrc32C: wrapperspb.Int64(crc32c(associatedData)),
	}, callOptions()...)
	if err != nil {
		return nil, m.callError("decrypt", err)
	}
	kek := keys.SecretFromBytes(resp.GetPlaintext())
	if resp.GetPlaintextCrc32C() == nil ||
		resp.GetPlaintextCrc32C().GetValue() != crc32c(kek.InsecureBytes()) {
		kek.Wipe()
		return nil, m.corrupt("decrypt", "the plaintext does not match its CRC32C checksum")
	}
	if kek.Len() != envelope.KEKSize {
		kek.Wipe()
		return nil, fmt.Errorf("%w: cloud KMS key %s decrypted a %d-byte KEK, want %d",
			keys.ErrWrongKey, m.key.Name, kek.Len(), envelope.KEKSize)
	}
	return envelope.Open(ctx, kek, sealed, boxed, associatedData)
}

// Close releases the client's connections.
func (m *Master) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.client == nil {
		return nil
	}
	err := m.client.Close()
	m.client = nil
	return err
}

// parseSealed splits a sealed copy into the KMS ciphertext and the box.
func parseSealed(sealed []byte) (blob, boxed []byte, err error) { return layout.Parse(sealed) }
