package azurekv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/cofferfs/coffer/keys"
)

// Causes of a failed Key Vault call, for errors.Is. A wrong key, or a sealed
// copy that was altered or moved, is keys.ErrWrongKey instead.
var (
	// ErrUnreachable reports a vault that did not answer in time, or whose
	// TLS certificate is not trusted.
	ErrUnreachable = errors.New("Key Vault is unreachable")
	// ErrCredentials reports missing, rejected or expired Azure credentials.
	ErrCredentials = errors.New("Azure credentials are missing, invalid or expired")
	// ErrAccessDenied reports credentials that may not use the key.
	ErrAccessDenied = errors.New("access to the Key Vault key was denied")
	// ErrKeyDisabled reports a disabled key or key version.
	ErrKeyDisabled = errors.New("Key Vault key is disabled")
	// ErrKeyNotFound reports a key, key version or vault that does not exist.
	ErrKeyNotFound = errors.New("Key Vault key not found")
	// ErrBadRequest reports a request Key Vault refused as invalid, for
	// example wrapKey on a key that is not an RSA key.
	ErrBadRequest = errors.New("Key Vault refused the request")
	// ErrUnavailable reports a vault that failed or throttled on its side.
	ErrUnavailable = errors.New("Key Vault failed to answer")
)

// Error is a failed Key Vault call: the operation, the key, the cause (one
// of the Err variables above) and the SDK's error.
type Error struct {
	Op   string // "wrap", "unwrap"
	Key  string // vault host, key name and version
	Kind error
	Err  error
}

// Error returns one line naming the key, the cause and the gist of the
// SDK's error.
func (e *Error) Error() string {
	return fmt.Sprintf("failed to %s with Key Vault key %s: %v: %s", e.Op, e.Key, e.Kind,
		gist(e.Err))
}

// Unwrap returns the cause and the SDK's error.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// Hint tells the user what to check, for a CLI "hint:" line.
func (e *Error) Hint() string {
	switch e.Kind {
	case ErrUnreachable:
		return "check the network path to the vault and that its TLS certificate is trusted " +
			"(SSL_CERT_FILE), or --kms-endpoint if set"
	case ErrCredentials:
		return "check the Azure credentials: AZURE_TENANT_ID, AZURE_CLIENT_ID and " +
			"AZURE_CLIENT_SECRET, the managed identity, or az login; renew expired secrets"
	case ErrAccessDenied:
		return "the identity needs the wrapKey and unwrapKey key permissions (or the " +
			"\"Key Vault Crypto User\" role) on this key; also check the vault's firewall"
	case ErrKeyDisabled:
		return "enable the key (az keyvault key set-attributes --enabled true) or use " +
			"another master key of the volume"
	case ErrKeyNotFound:
		return "check the vault name, the key name and version, and that the key was " +
			"not deleted"
	case ErrBadRequest:
		return "the key must be an RSA key (RSA or RSA-HSM) that allows wrapKey and unwrapKey"
	}
	return "try again later; if it persists, check the Azure service health"
}

// gist returns the part of an SDK error that says what went wrong: the
// network error, or the status and the code and message Key Vault answered.
func gist(err error) string {
	var (
		opErr   *net.OpError
		respErr *azcore.ResponseError
		credErr *credError
	)
	switch {
	case errors.As(err, &respErr):
		msg := fmt.Sprintf("HTTP %d %s", respErr.StatusCode, respErr.ErrorCode)
		if m := serviceMessage(respErr); m != "" {
			msg += ": " + m
		}
		return msg
	case errors.As(err, &credErr):
		return oneLine(credErr.err.Error())
	case errors.As(err, &opErr):
		return opErr.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer within the time limit"
	}
	return firstLine(err.Error())
}

// serviceMessage returns the message of Key Vault's error body,
// {"error":{"code":…,"message":…}}, without the SDK's request dump.
func serviceMessage(e *azcore.ResponseError) string {
	s := e.Error()
	i := strings.Index(s, `"message":`)
	if i < 0 {
		return ""
	}
	s = strings.TrimSpace(s[i+len(`"message":`):])
	if !strings.HasPrefix(s, `"`) {
		return ""
	}
	end := strings.Index(s[1:], `"`)
	if end < 0 {
		return ""
	}
	return s[1 : 1+end]
}

// oneLine joins the lines of a multi-line error, such as
// DefaultAzureCredential's list of attempted credentials.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " ")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// callError classifies the error of a Key Vault call.
func (m *Master) callError(op string, err error) error {
	var respErr *azcore.ResponseError
	if op == "unwrap" && errors.As(err, &respErr) && respErr.StatusCode == http.StatusBadRequest {
		return fmt.Errorf("%w: Key Vault key %s refused the sealed ring: it was wrapped by "+
			"another key or altered: %s", keys.ErrWrongKey, m.key, gist(err))
	}
	if op == "unwrap" && errors.As(err, &respErr) && respErr.StatusCode == http.StatusNotFound {
		// The version comes from the sealed copy: it was deleted, or the
		// copy belongs to another key or was altered.
		return fmt.Errorf("%w: the key version the sealed ring names is gone, or the ring "+
			"belongs to another key: %w", keys.ErrWrongKey,
			&Error{Op: op, Key: m.key.String(), Kind: ErrKeyNotFound, Err: err})
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("failed to %s with Key Vault key %s: %w", op, m.key, err)
	}
	kind := classify(err)
	if kind == ErrUnreachable {
		op += " at " + m.endpoint
	}
	return &Error{Op: op, Key: m.key.String(), Kind: kind, Err: err}
}

// classify maps an SDK error to one of the Err variables.
func classify(err error) error {
	var (
		respErr *azcore.ResponseError
		credErr *credError
		netErr  net.Error
		certErr *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &credErr):
		return ErrCredentials
	case errors.As(err, &certErr):
		return ErrUnreachable
	case errors.As(err, &respErr):
		return classifyStatus(respErr)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr):
		return ErrUnreachable
	}
	return ErrUnavailable
}

// classifyStatus maps Key Vault's documented status codes to a cause.
func classifyStatus(e *azcore.ResponseError) error {
	switch e.StatusCode {
	case http.StatusUnauthorized:
		return ErrCredentials
	case http.StatusForbidden:
		if strings.Contains(strings.ToLower(serviceMessage(e)), "disabled") ||
			strings.EqualFold(e.ErrorCode, "KeyDisabled") {
			return ErrKeyDisabled
		}
		return ErrAccessDenied
	case http.StatusNotFound:
		return ErrKeyNotFound
	case http.StatusBadRequest:
		return ErrBadRequest
	}
	return ErrUnavailable
}

// credTagger marks the errors of a credential, so that a failed token
// request is told apart from a failed Key Vault call. It also gets tokens
// for Key Vault and Managed HSM only: the client takes the scope from the
// server's challenge, and with an endpoint whose host is not a vault's
// (--kms-endpoint to a private endpoint) the SDK cannot check it, so a
// server there could otherwise ask for, and receive, a token for another
// Azure service.
type credTagger struct{ azcore.TokenCredential }

// vaultScopes are the token scopes of Key Vault and Managed HSM in the
// public and sovereign clouds.
var vaultScopes = map[string]bool{}

func init() {
	for _, s := range vaultSuffixes {
		vaultScopes["https://"+strings.TrimPrefix(s, ".")+"/.default"] = true
	}
}

func (c credTagger) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken,
	error) {
	for _, s := range o.Scopes {
		if !vaultScopes[s] {
			return azcore.AccessToken{}, fmt.Errorf("the server asked for a token for %q, "+
				"which is not Key Vault's: refused", s)
		}
	}
	tok, err := c.TokenCredential.GetToken(ctx, o)
	if err != nil {
		return tok, &credError{err}
	}
	return tok, nil
}

// credError is an error of the credential chain.
type credError struct{ err error }

func (e *credError) Error() string { return e.err.Error() }
func (e *credError) Unwrap() error { return e.err }
