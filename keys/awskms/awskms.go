// Package awskms implements the AWS KMS master key,
// aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID (or an alias ARN,
// …:alias/NAME). The ring never leaves the machine: each seal draws a fresh
// 32-byte key-encryption key (KEK), has KMS encrypt it with the Encrypt API
// under an encryption context that names the volume and the master key, and
// seals the ring locally with the KEK. Unsealing asks KMS to decrypt the KEK
// under the same context, so a sealed copy moved to another volume or to
// another master-key slot fails in KMS itself, and every unseal shows in
// CloudTrail with the volume ID.
//
// The KMS client uses the standard AWS credential chain (environment,
// shared config and credentials files, SSO, web identity, ECS and EC2
// roles) and the region of the ARN, which must be one DNS label, so that
// the SDK's endpoint, kms.REGION.amazonaws.com, stays in AWS's domain
// whatever the volume config says. The endpoint comes from
// masterkey.Options.KMSEndpoint (the --kms-endpoint flag) or, failing that,
// the standard AWS_ENDPOINT_URL_KMS and AWS_ENDPOINT_URL variables, which
// the SDK reads itself. Every KMS call is bounded by a timeout and at most
// three attempts.
//
// Importing the package registers the kind with package masterkey.
package awskms

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/arn"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/envelope"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// Scheme is the URI scheme of AWS KMS master keys; it is also the kind
// recorded in the config.
const Scheme = "aws-kms"

// Form is the URI form shown in help and error messages.
const Form = "aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID"

func init() { masterkey.Register(envelope.Kind(Scheme, Form, Canonical, New)) }

// Key is a parsed aws-kms URI.
type Key struct {
	// ARN is the key or alias ARN, as KMS takes it in KeyId.
	ARN string
	// Region is the region of the ARN, where the client sends its calls.
	Region string
}

// URI returns the canonical aws-kms URI of k.
func (k Key) URI() string { return Scheme + "://" + k.ARN }

// ParseURI parses aws-kms://ARN. The ARN must name a KMS key
// (key/ID) or alias (alias/NAME) with a region and a 12-digit account.
func ParseURI(uri string) (Key, error) {
	scheme, rest, _ := strings.Cut(uri, ":")
	if !strings.EqualFold(scheme, Scheme) || !strings.HasPrefix(rest, "//") {
		return Key{}, malformed(uri, "want "+Form)
	}
	s := strings.TrimPrefix(rest, "//")
	if strings.ContainsAny(s, "?#") {
		return Key{}, malformed(uri, "an aws-kms URI takes no query or fragment")
	}
	a, err := arn.Parse(s)
	if err != nil {
		return Key{}, malformed(uri, "the part after aws-kms:// must be a KMS key ARN")
	}
	switch {
	case a.Service != "kms":
		return Key{}, malformed(uri, "the ARN names service "+a.Service+", not kms")
	case a.Region == "":
		return Key{}, malformed(uri, "the ARN has no region")
	case !isRegion(a.Region):
		return Key{}, malformed(uri, "the ARN's region must be a region name such as "+
			"eu-west-1: lower-case letters, digits and '-'")
	case !isAccount(a.AccountID):
		return Key{}, malformed(uri, "the ARN's account must be 12 digits")
	case !isResource(a.Resource):
		return Key{}, malformed(uri, "the ARN must end in key/ID or alias/NAME")
	}
	return Key{ARN: a.String(), Region: a.Region}, nil
}

// Canonical checks an aws-kms URI and returns its canonical form, for the
// masterkey registry.
func Canonical(uri string) (string, error) { return envelope.Canonical(ParseURI, uri) }

func malformed(uri, why string) error {
	return fmt.Errorf("%w %q: %s", masterkey.ErrMalformed, keys.RedactURI(uri), why)
}

// isRegion reports whether s can be a region name: one DNS label of
// lower-case letters, digits and '-'. The client sends its calls to
// kms.REGION.amazonaws.com (or the partition's domain), and the region
// comes from the volume config, which whoever can write the backing
// directory can edit: a dot, slash or '@' there would move the host out of
// AWS's domain (kms.x@evil.example/.amazonaws.com is evil.example).
func isRegion(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func isAccount(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isResource reports whether s is key/ID or alias/NAME with a plausible ID
// or name: letters, digits, '-', '_' and, for aliases, '/'.
func isResource(s string) bool {
	typ, id, ok := strings.Cut(s, "/")
	if !ok || id == "" || len(id) > 256 {
		return false
	}
	for _, c := range []byte(id) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && c != '-' && c != '_' && (typ != "alias" || c != '/') {
			return false
		}
	}
	return typ == "key" || typ == "alias"
}

// checkEndpoint checks an endpoint override: an http or https URL with a
// host and nothing else.
func checkEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%w: KMS endpoint %q must be an http:// or https:// URL such as "+
			"https://kms.eu-west-1.amazonaws.com", masterkey.ErrMalformed, keys.RedactURI(ep))
	}
	return nil
}
