package awskms

import (
	"context"
	"errors"
	"fmt"
	"net"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/cofferfs/coffer/keys"
)

// Causes of a failed KMS call, for errors.Is. A wrong key, or a sealed copy
// that was altered or moved, is keys.ErrWrongKey instead.
var (
	// ErrUnreachable reports a KMS endpoint that did not answer in time.
	ErrUnreachable = errors.New("KMS is unreachable")
	// ErrCredentials reports missing, rejected or expired AWS credentials.
	ErrCredentials = errors.New("AWS credentials are missing, invalid or expired")
	// ErrAccessDenied reports credentials that may not use the key.
	ErrAccessDenied = errors.New("access to the KMS key was denied")
	// ErrKeyDisabled reports a disabled KMS key.
	ErrKeyDisabled = errors.New("KMS key is disabled")
	// ErrKeyNotFound reports a key or alias that does not exist in the
	// region.
	ErrKeyNotFound = errors.New("KMS key not found")
	// ErrKeyState reports a key pending deletion or import, or otherwise
	// unusable in its state.
	ErrKeyState = errors.New("KMS key is not usable in its current state")
	// ErrUnavailable reports a KMS that failed on its side.
	ErrUnavailable = errors.New("KMS failed to answer")
)

// Error is a failed KMS call: the operation, the key, the cause (one of the
// Err variables above) and the SDK's error.
type Error struct {
	Op   string // "encrypt", "decrypt"
	Key  string // key or alias ARN
	Kind error
	Err  error
}

// Error returns one line naming the key, the cause and the gist of the
// SDK's error.
func (e *Error) Error() string {
	return fmt.Sprintf("failed to %s with KMS key %s: %v: %s", e.Op, e.Key, e.Kind, gist(e.Err))
}

// gist returns the part of an SDK error that says what went wrong, without
// the operation and retry preamble the SDK wraps around it: the network
// error, or the code and message KMS answered.
func gist(err error) string {
	var (
		opErr  *net.OpError
		apiErr smithy.APIError
	)
	switch {
	case errors.As(err, &opErr):
		return opErr.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer within the time limit"
	case errors.As(err, &apiErr):
		if msg := apiErr.ErrorMessage(); msg != "" {
			return apiErr.ErrorCode() + ": " + msg
		}
		return apiErr.ErrorCode()
	}
	return err.Error()
}

// Unwrap returns the cause and the SDK's error.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// Hint tells the user what to check, for a CLI "hint:" line.
func (e *Error) Hint() string {
	switch e.Kind {
	case ErrUnreachable:
		return "check the network path to KMS, or --kms-endpoint / AWS_ENDPOINT_URL_KMS if set"
	case ErrCredentials:
		return "check the AWS credential chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, " +
			"AWS_PROFILE and ~/.aws/credentials, or the instance role; renew expired " +
			"session credentials"
	case ErrAccessDenied:
		return "the credentials need kms:Encrypt and kms:Decrypt on this key with coffer's " +
			"encryption context (see docs/master-keys.md); also check that the key exists in " +
			"this region and is enabled"
	case ErrKeyDisabled:
		return "enable the key (aws kms enable-key --key-id " + e.Key + ") or use another " +
			"master key of the volume"
	case ErrKeyNotFound:
		return "check the key ARN, its region and account"
	case ErrKeyState:
		return "check the key's state (aws kms describe-key); cancel a scheduled deletion " +
			"with aws kms cancel-key-deletion"
	}
	return "try again later; if it persists, check the AWS service health"
}

// callError classifies the error of a KMS call.
func (m *Master) callError(op string, err error) error {
	var (
		invalid   *types.InvalidCiphertextException
		incorrect *types.IncorrectKeyException
	)
	if errors.As(err, &invalid) || errors.As(err, &incorrect) {
		return fmt.Errorf("%w: KMS key %s refused the sealed ring: it was sealed by another "+
			"key or for another volume or master ID, or altered: %w", keys.ErrWrongKey,
			m.key.ARN, err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("failed to %s with KMS key %s: %w", op, m.key.ARN, err)
	}
	kind := classify(err)
	if kind == ErrUnreachable && m.endpoint != "" {
		op += " at " + m.endpoint
	}
	return &Error{Op: op, Key: m.key.ARN, Kind: kind, Err: err}
}

// classify maps an SDK error to one of the Err variables.
func classify(err error) error {
	var (
		disabled  *types.DisabledException
		notFound  *types.NotFoundException
		state     *types.KMSInvalidStateException
		signing   *v4.SigningError
		send      *smithyhttp.RequestSendError
		netErr    net.Error
		apiErr    smithy.APIError
		pending   *types.KeyUnavailableException
		dependent *types.DependencyTimeoutException
	)
	switch {
	case errors.As(err, &disabled):
		return ErrKeyDisabled
	case errors.As(err, &notFound):
		return ErrKeyNotFound
	case errors.As(err, &state):
		return ErrKeyState
	case errors.As(err, &pending), errors.As(err, &dependent):
		return ErrUnavailable
	case errors.As(err, &signing):
		return ErrCredentials
	case errors.As(err, &apiErr):
		return classifyCode(apiErr.ErrorCode())
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &send),
		errors.As(err, &netErr):
		return ErrUnreachable
	}
	return ErrUnavailable
}

// classifyCode maps the error codes KMS returns without a modelled type.
func classifyCode(code string) error {
	switch code {
	case "AccessDeniedException":
		return ErrAccessDenied
	case "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
		"InvalidClientTokenId", "IncompleteSignature", "MissingAuthenticationToken":
		return ErrCredentials
	}
	return ErrUnavailable
}
