package hcvault

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/envelope"
)

// SealVersion is the version of the sealed ring layout.
const SealVersion = envelope.Version

// layout is the layout of a sealed ring copy, drawn at envelope.Layout and
// in docs/format.md: version SealVersion, the length of the transit
// ciphertext (1..maxBlob), the transit ciphertext of the 32-byte KEK, ASCII
// "vault:vN:BASE64", under associated_data and context both equal to the
// ring AD, and the box of the ring payload under the KEK, whose associated
// data is the ring AD followed by all that comes before the box.
var layout = envelope.Layout{Kind: Scheme, Blob: "transit ciphertext", MaxBlob: maxBlob}

const (
	// maxBlob bounds the transit ciphertext: that of a 32-byte plaintext
	// under an AES or ChaCha key is under 100 bytes, under an RSA-4096 key
	// about 700.
	maxBlob = 4096
	// ciphertextPrefix starts every transit ciphertext.
	ciphertextPrefix = "vault:v"
)

// Call bounds. Vars so that tests can shorten them.
var (
	callTimeout  = 30 * time.Second
	maxRetries   = 2 // three attempts in all
	minRetryWait = 200 * time.Millisecond
	maxRetryWait = 2 * time.Second
)

// TokenFile is the token file the vault CLI writes on login, relative to
// the home directory; it is read when VAULT_TOKEN is not set.
const TokenFile = ".vault-token"

// Master is a keys.Master whose key stays in a Vault transit engine. It is
// safe for concurrent use.
type Master struct {
	key     Key
	address string // the server address, for error messages
	token   bool   // whether a token was found
	client  *vault.Client
}

var _ keys.Master = (*Master)(nil)

// New returns the Master for an hcvault URI. endpoint, when not empty,
// overrides the server address of the URI. New makes no network call: an
// unreachable server or a rejected token show in Seal and Unseal.
func New(_ context.Context, uri, endpoint string) (*Master, error) {
	k, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	address := k.Address()
	if endpoint != "" {
		if err := checkEndpoint(endpoint); err != nil {
			return nil, err
		}
		address = strings.TrimRight(endpoint, "/")
	}

	// DefaultConfig reads VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT,
	// VAULT_CLIENT_KEY, VAULT_TLS_SERVER_NAME and VAULT_SKIP_VERIFY;
	// NewClient reads VAULT_TOKEN and VAULT_NAMESPACE.
	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		return nil, &Error{Op: "configure the Vault client", Key: k.URI(), Kind: ErrTLS,
			Err: cfg.Error}
	}
	cfg.Address = address
	cfg.AgentAddress = ""
	cfg.Timeout = callTimeout
	cfg.MaxRetries = maxRetries
	cfg.MinRetryWait = minRetryWait
	cfg.MaxRetryWait = maxRetryWait
	client, err := vault.NewClient(cfg)
	if err != nil {
		return nil, &Error{Op: "configure the Vault client", Key: k.URI(), Kind: ErrTLS,
			Err: err}
	}
	if err := client.SetAddress(address); err != nil {
		return nil, fmt.Errorf("%w: Vault address %q: %w", ErrUnreachable, address, err)
	}
	if client.Token() == "" {
		if tok, err := tokenFromFile(); err != nil {
			return nil, &Error{Op: "read the Vault token", Key: k.URI(), Kind: ErrCredentials,
				Err: err}
		} else if tok != "" {
			client.SetToken(tok)
		}
	}
	return &Master{key: k, address: address, token: client.Token() != "", client: client}, nil
}

// tokenFromFile reads ~/.vault-token as the vault CLI does; a missing file
// or home directory is no token, not an error.
func tokenFromFile() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", nil
	}
	b, err := os.ReadFile(filepath.Join(home, TokenFile))
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(b)), nil
}

// Seal draws a fresh KEK, has transit encrypt it bound to associatedData,
// and seals plaintext with it.
func (m *Master) Seal(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	if err := envelope.CheckRingAD(Scheme, associatedData); err != nil {
		return nil, err
	}
	return envelope.Seal(ctx, plaintext, associatedData, func(kek []byte) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		data, err := m.call(ctx, "encrypt", map[string]any{
			"plaintext":       base64.StdEncoding.EncodeToString(kek),
			"associated_data": base64.StdEncoding.EncodeToString(associatedData),
			"context":         base64.StdEncoding.EncodeToString(associatedData),
		})
		if err != nil {
			return nil, err
		}
		ct, _ := data["ciphertext"].(string)
		if n := len(ct); n == 0 || n > maxBlob || !strings.HasPrefix(ct, ciphertextPrefix) {
			return nil, fmt.Errorf("Vault transit key %s returned no usable ciphertext "+
				"(%d bytes)", m.key.URI(), n)
		}
		return layout.Header([]byte(ct)), nil
	})
}

// Unseal has transit decrypt the KEK bound to associatedData and opens the
// ring with it. A copy sealed for another volume, master ID or transit key,
// or altered, fails with keys.ErrWrongKey.
func (m *Master) Unseal(ctx context.Context, sealed, associatedData []byte) ([]byte, error) {
	if err := envelope.CheckRingAD(Scheme, associatedData); err != nil {
		return nil, err
	}
	ct, boxed, err := parseSealed(sealed)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	data, err := m.call(ctx, "decrypt", map[string]any{
		"ciphertext":      string(ct),
		"associated_data": base64.StdEncoding.EncodeToString(associatedData),
		"context":         base64.StdEncoding.EncodeToString(associatedData),
	})
	if err != nil {
		return nil, err
	}
	pt, _ := data["plaintext"].(string)
	raw, err := base64.StdEncoding.DecodeString(pt)
	if err != nil {
		return nil, fmt.Errorf("%w: Vault transit key %s returned a plaintext that is not "+
			"base64", keys.ErrWrongKey, m.key.URI())
	}
	kek := keys.SecretFromBytes(raw)
	if n := kek.Len(); n != envelope.KEKSize {
		kek.Wipe()
		return nil, fmt.Errorf("%w: Vault transit key %s decrypted a %d-byte KEK, want %d",
			keys.ErrWrongKey, m.key.URI(), n, envelope.KEKSize)
	}
	return envelope.Open(ctx, kek, sealed, boxed, associatedData)
}

// call writes body to MOUNT/op/NAME and returns the response's data.
func (m *Master) call(ctx context.Context, op string, body map[string]any) (
	map[string]any, error) {
	if !m.token {
		return nil, &Error{Op: op, Key: m.key.URI(), Kind: ErrCredentials,
			Err: fmt.Errorf("neither VAULT_TOKEN nor ~/%s holds a token", TokenFile)}
	}
	s, err := m.client.Logical().WriteWithContext(ctx, m.key.Mount+"/"+op+"/"+m.key.Name, body)
	if err != nil {
		return nil, m.callError(op, err)
	}
	if s == nil || s.Data == nil {
		return nil, &Error{Op: op, Key: m.key.URI(), Kind: ErrKeyNotFound,
			Err: fmt.Errorf("Vault answered %s with no data", op)}
	}
	return s.Data, nil
}

// parseSealed splits a sealed copy into the transit ciphertext and the box.
func parseSealed(sealed []byte) (ct, boxed []byte, err error) {
	ct, boxed, err = layout.Parse(sealed)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.HasPrefix(ct, []byte(ciphertextPrefix)) {
		return nil, nil, fmt.Errorf("%w: sealed ring holds no Vault transit ciphertext",
			keys.ErrWrongKey)
	}
	return ct, boxed, nil
}
