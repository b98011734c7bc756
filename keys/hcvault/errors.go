package hcvault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	vault "github.com/hashicorp/vault/api"

	"github.com/cofferfs/coffer/keys"
)

// Causes of a failed transit call, for errors.Is. A wrong key, or a sealed
// copy that was altered or moved, is keys.ErrWrongKey instead.
var (
	// ErrUnreachable reports a Vault server that did not answer in time.
	ErrUnreachable = errors.New("Vault is unreachable")
	// ErrTLS reports a server certificate the client does not trust, or a
	// bad VAULT_CACERT, VAULT_CLIENT_CERT or similar setting.
	ErrTLS = errors.New("the TLS connection to Vault failed")
	// ErrCredentials reports a missing Vault token.
	ErrCredentials = errors.New("no Vault token")
	// ErrAccessDenied reports a token that Vault refused: invalid, expired,
	// or without a policy that allows the call.
	ErrAccessDenied = errors.New("Vault denied access to the transit key")
	// ErrKeyNotFound reports a transit key or mount that does not exist.
	ErrKeyNotFound = errors.New("Vault transit key not found")
	// ErrKeyVersion reports a ciphertext whose key version the key's
	// min_decryption_version no longer allows.
	ErrKeyVersion = errors.New("the transit key version that sealed the ring is no " +
		"longer allowed to decrypt")
	// ErrRejected reports another request Vault refused, for example
	// associated data on a key type that does not take it.
	ErrRejected = errors.New("Vault rejected the request")
	// ErrUnavailable reports a Vault that failed on its side, is sealed,
	// or kept rate-limiting the call.
	ErrUnavailable = errors.New("Vault failed to answer")
)

// Error is a failed transit call: the operation, the key, the cause (one of
// the Err variables above) and the client's error.
type Error struct {
	Op   string // "encrypt", "decrypt"
	Key  string // hcvault URI
	Kind error
	Err  error
}

// Error returns one line naming the key, the cause and the gist of the
// client's error.
func (e *Error) Error() string {
	return fmt.Sprintf("failed to %s with Vault transit key %s: %v: %s", e.Op, e.Key, e.Kind,
		gist(e.Err))
}

// Unwrap returns the cause and the client's error.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// Hint tells the user what to check, for a CLI "hint:" line.
func (e *Error) Hint() string {
	switch e.Kind {
	case ErrUnreachable:
		return "check the network path to the Vault server, or --kms-endpoint if set"
	case ErrTLS:
		return "point VAULT_CACERT or VAULT_CAPATH at the CA that signed the Vault " +
			"server's certificate, and check VAULT_CLIENT_CERT and VAULT_CLIENT_KEY if set"
	case ErrCredentials:
		return "set VAULT_TOKEN, or log in with the vault CLI so that ~/.vault-token holds " +
			"a token"
	case ErrAccessDenied:
		return "check that the token is valid and not expired (vault token lookup), that " +
			"VAULT_NAMESPACE is right, and that its policy grants update on " +
			"MOUNT/encrypt/NAME and MOUNT/decrypt/NAME (see docs/master-keys.md)"
	case ErrKeyNotFound:
		return "check the mount path and key name in the URI (vault list MOUNT/keys)"
	case ErrKeyVersion:
		return "lower the key's min_decryption_version, or use another master key of the " +
			"volume"
	case ErrRejected:
		return "use a transit key of type aes256-gcm96, aes128-gcm96 or chacha20-poly1305 " +
			"(see docs/master-keys.md)"
	}
	return "try again later; if Vault is sealed, unseal it"
}

// gist returns the part of a client error that says what went wrong: the
// messages Vault answered on one line, or the network error.
func gist(err error) string {
	var (
		respErr *vault.ResponseError
		opErr   *net.OpError
	)
	switch {
	case errors.As(err, &respErr):
		msgs := make([]string, 0, len(respErr.Errors))
		for _, m := range respErr.Errors {
			// Vault may format several errors as one multi-line list.
			f := strings.Fields(m)
			if len(f) > 3 && (f[1] == "error" || f[1] == "errors") && f[2] == "occurred:" {
				f = f[3:] // "1 error occurred:"
			}
			line := strings.Join(f, " ")
			line = strings.TrimPrefix(line, "* ")
			if line != "" {
				msgs = append(msgs, line)
			}
		}
		if len(msgs) == 0 {
			return fmt.Sprintf("HTTP %d", respErr.StatusCode)
		}
		return fmt.Sprintf("HTTP %d: %s", respErr.StatusCode, strings.Join(msgs, "; "))
	case errors.As(err, &opErr):
		return opErr.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer within the time limit"
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// callError classifies the error of a transit call.
func (m *Master) callError(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("failed to %s with Vault transit key %s: %w", op, m.key.URI(), err)
	}
	kind := classify(err)
	if kind == keys.ErrWrongKey {
		return fmt.Errorf("%w: Vault transit key %s refused the sealed ring: it was sealed by "+
			"another key or for another volume or master ID, or altered: %s", keys.ErrWrongKey,
			m.key.URI(), gist(err))
	}
	if kind == ErrUnreachable || kind == ErrTLS {
		op += " at " + m.address
	}
	return &Error{Op: op, Key: m.key.URI(), Kind: kind, Err: err}
}

// classify maps a client error to keys.ErrWrongKey or one of the Err
// variables, after the status codes and messages of
// https://developer.hashicorp.com/vault/api-docs#http-status-codes and
// https://developer.hashicorp.com/vault/api-docs/secret/transit.
func classify(err error) error {
	var (
		respErr  *vault.ResponseError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		recErr   tls.RecordHeaderError
		certErr  *tls.CertificateVerificationError
		netErr   net.Error
	)
	switch {
	case errors.As(err, &respErr):
		return classifyResponse(respErr)
	case errors.As(err, &unknown), errors.As(err, &hostname), errors.As(err, &invalid),
		errors.As(err, &recErr), errors.As(err, &certErr):
		return ErrTLS
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr):
		return ErrUnreachable
	}
	return ErrUnreachable
}

func classifyResponse(e *vault.ResponseError) error {
	msg := strings.ToLower(strings.Join(e.Errors, " "))
	switch e.StatusCode {
	case 400:
		switch {
		case strings.Contains(msg, "key not found"):
			return ErrKeyNotFound
		case strings.Contains(msg, "disallowed by policy"), strings.Contains(msg, "too old"):
			return ErrKeyVersion
		case strings.Contains(msg, "message authentication failed"),
			strings.Contains(msg, "invalid ciphertext"),
			strings.Contains(msg, "unable to decrypt"),
			strings.Contains(msg, "invalid key version"):
			return keys.ErrWrongKey
		}
		return ErrRejected
	case 401, 403:
		return ErrAccessDenied
	case 404:
		return ErrKeyNotFound
	}
	return ErrUnavailable
}
