// Package dpapi implements the Windows DPAPI master key, dpapi:machine and
// dpapi:user: the ring sealed with CryptProtectData, bound to this computer
// (machine) or to the Windows account running coffer (user), with the ring's
// associated data as DPAPI's optional entropy so that a sealed copy opens
// only for its volume and master ID. It is the Windows counterpart of
// systemd-creds:host.
//
// The URI parsing here builds everywhere; the master key itself, and its
// registration with package masterkey, exist only in Windows builds.
package dpapi

import (
	"fmt"
	"strings"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// Scheme is the URI scheme of DPAPI master keys; it is also the kind
// recorded in the config.
const Scheme = "dpapi"

// Form is the URI form shown in help and error messages.
const Form = "dpapi:machine|user"

// Scope says whose DPAPI key seals the ring.
type Scope int

// Scopes of a DPAPI master key.
const (
	// Machine seals with the computer's DPAPI key: any account on this
	// computer can unseal (CRYPTPROTECT_LOCAL_MACHINE).
	Machine Scope = iota + 1
	// User seals with the DPAPI key of the Windows account running coffer:
	// only that account, on this computer or its roaming profile, can
	// unseal.
	User
)

// String returns "machine" or "user".
func (s Scope) String() string {
	switch s {
	case Machine:
		return "machine"
	case User:
		return "user"
	}
	return fmt.Sprintf("Scope(%d)", int(s))
}

// URI returns the canonical URI of the scope.
func (s Scope) URI() string { return Scheme + ":" + s.String() }

// ParseURI parses dpapi:machine or dpapi:user (scheme and scope in any
// case).
func ParseURI(uri string) (Scope, error) {
	scheme, rest, ok := strings.Cut(uri, ":")
	if !ok || !strings.EqualFold(scheme, Scheme) {
		return 0, malformed(uri, "want dpapi:machine or dpapi:user")
	}
	switch strings.ToLower(rest) {
	case "machine":
		return Machine, nil
	case "user":
		return User, nil
	case "":
		return 0, malformed(uri, "say whose key seals the ring: dpapi:machine or dpapi:user")
	}
	return 0, malformed(uri, "the scope must be machine or user")
}

// Canonical checks a dpapi URI and returns its canonical form.
func Canonical(uri string) (string, error) {
	s, err := ParseURI(uri)
	if err != nil {
		return "", err
	}
	return s.URI(), nil
}

func malformed(uri, why string) error {
	return fmt.Errorf("%w %q: %s", masterkey.ErrMalformed, keys.RedactURI(uri), why)
}
