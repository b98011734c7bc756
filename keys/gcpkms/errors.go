package gcpkms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"

	"cloud.google.com/go/auth"
	"google.golang.org/api/googleapi"

	"github.com/cofferfs/coffer/keys"
)

// Causes of a failed Cloud KMS call, for errors.Is. A wrong key, or a sealed
// copy that was altered or moved, is keys.ErrWrongKey instead.
var (
	// ErrUnreachable reports a Cloud KMS endpoint that did not answer in
	// time.
	ErrUnreachable = errors.New("cloud KMS is unreachable")
	// ErrCredentials reports missing, rejected or expired Google
	// credentials.
	ErrCredentials = errors.New("google credentials are missing, invalid or expired")
	// ErrAccessDenied reports credentials that may not use the key (Cloud
	// KMS also answers so for a key that does not exist, to callers that
	// may not see it).
	ErrAccessDenied = errors.New("permission to use the Cloud KMS key was denied")
	// ErrKeyDisabled reports a key whose version is disabled.
	ErrKeyDisabled = errors.New("cloud KMS key version is disabled")
	// ErrKeyNotFound reports a key that does not exist.
	ErrKeyNotFound = errors.New("cloud KMS key not found")
	// ErrKeyState reports a key that cannot be used in its state: a
	// version destroyed or scheduled for destruction, a key without a
	// primary version, or a key that is not for symmetric encryption.
	ErrKeyState = errors.New("cloud KMS key is not usable in its current state")
	// ErrThrottled reports a quota exceeded after retries.
	ErrThrottled = errors.New("cloud KMS quota exceeded")
	// ErrCorrupted reports an answer that failed its CRC32C integrity
	// check.
	ErrCorrupted = errors.New("cloud KMS answer failed its integrity check")
	// ErrUnavailable reports a Cloud KMS that failed on its side, or
	// refused the request for another reason.
	ErrUnavailable = errors.New("cloud KMS failed to answer")
)

// Error is a failed Cloud KMS call: the operation, the key, the cause (one
// of the Err variables above) and the client's error.
type Error struct {
	Op   string // "encrypt", "decrypt"
	Key  string // CryptoKey resource name
	Kind error
	Err  error
}

// Error returns one line naming the key, the cause and the gist of the
// client's error.
func (e *Error) Error() string {
	return fmt.Sprintf("failed to %s with Cloud KMS key %s: %v: %s", e.Op, e.Key, e.Kind,
		gist(e.Err))
}

// Unwrap returns the cause and the client's error.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// Hint tells the user what to check, for a CLI "hint:" line.
func (e *Error) Hint() string {
	switch e.Kind {
	case ErrUnreachable:
		return "check the network path to Cloud KMS and to the credentials' token endpoint, " +
			"or --kms-endpoint if set"
	case ErrCredentials:
		return "check the Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS, " +
			"gcloud auth application-default login, or the instance's service account"
	case ErrAccessDenied:
		return "the caller needs roles/cloudkms.cryptoKeyEncrypterDecrypter on the key " +
			"(see docs/master-keys.md); also check the key name and that it exists"
	case ErrKeyDisabled:
		return "enable the key's primary version (gcloud kms keys versions enable) or use " +
			"another master key of the volume"
	case ErrKeyNotFound:
		return "check the project, location, key ring and key in the URI"
	case ErrKeyState:
		return "check the key's versions (gcloud kms keys versions list); restore a version " +
			"scheduled for destruction, or use a key whose purpose is ENCRYPT_DECRYPT"
	case ErrThrottled:
		return "Cloud KMS quota exceeded: try again later or raise the quota"
	case ErrCorrupted:
		return "data was corrupted between coffer and Cloud KMS; try again, and check " +
			"proxies on the path"
	}
	return "try again later; if it persists, check the Google Cloud status page"
}

// rpcStatus is the error body of Google REST APIs: google.rpc.Status in
// JSON, https://cloud.google.com/apis/design/errors#http_mapping.
type rpcStatus struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
	} `json:"error"`
}

// httpError returns the HTTP code and google.rpc.Code name of an API error.
func httpError(err error) (code int, status, msg string, ok bool) {
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) {
		return 0, "", "", false
	}
	var s rpcStatus
	if json.Unmarshal([]byte(gerr.Body), &s) == nil {
		status = s.Error.Status
	}
	return gerr.Code, status, gerr.Message, true
}

// gist returns the part of a client error that says what went wrong: the
// network error, or the code and message Cloud KMS answered.
func gist(err error) string {
	var opErr *net.OpError
	switch {
	case errors.As(err, &opErr):
		return opErr.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer within the time limit"
	}
	if code, status, msg, ok := httpError(err); ok {
		return fmt.Sprintf("HTTP %d %s: %s", code, status, firstLine(msg))
	}
	return firstLine(err.Error())
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// retryable reports whether a failed call may succeed when repeated:
// throttling and server-side failures.
func retryable(err error) bool {
	code, _, _, ok := httpError(err)
	return ok && (code == 429 || code == 500 || code == 502 || code == 503 || code == 504)
}

// corrupt is the error of an answer that failed an integrity check.
func (m *Master) corrupt(op, why string) error {
	return &Error{Op: op, Key: m.key.Name, Kind: ErrCorrupted, Err: errors.New(why)}
}

// callError classifies the error of a Cloud KMS call.
func (m *Master) callError(op string, err error) error {
	if _, status, _, ok := httpError(err); ok && op == "decrypt" && status == "INVALID_ARGUMENT" {
		// Cloud KMS answers 400 INVALID_ARGUMENT "Decryption failed: the
		// ciphertext is invalid." to a ciphertext of another key, under
		// other AAD, or altered.
		return fmt.Errorf("%w: Cloud KMS key %s refused the sealed ring: it was sealed by "+
			"another key or for another volume or master ID, or altered: %s", keys.ErrWrongKey,
			m.key.Name, gist(err))
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("failed to %s with Cloud KMS key %s: %w", op, m.key.Name, err)
	}
	kind := classify(err)
	if kind == ErrUnreachable && m.endpoint != "" {
		op += " at " + m.endpoint
	}
	return &Error{Op: op, Key: m.key.Name, Kind: kind, Err: err}
}

// classify maps a client error to one of the Err variables.
func classify(err error) error {
	if code, status, msg, ok := httpError(err); ok {
		switch {
		case code == 401 || status == "UNAUTHENTICATED":
			return ErrCredentials
		case code == 403 || status == "PERMISSION_DENIED":
			return ErrAccessDenied
		case code == 404 || status == "NOT_FOUND":
			return ErrKeyNotFound
		case code == 429 || status == "RESOURCE_EXHAUSTED":
			return ErrThrottled
		case status == "FAILED_PRECONDITION" && strings.Contains(msg, "DISABLED"):
			return ErrKeyDisabled
		case status == "FAILED_PRECONDITION":
			return ErrKeyState
		}
		return ErrUnavailable
	}
	var (
		authErr *auth.Error
		netErr  net.Error
	)
	switch {
	case errors.As(err, &authErr):
		return ErrCredentials
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr):
		return ErrUnreachable
	}
	return ErrUnavailable
}
