package pkcs11

import (
	"errors"
	"fmt"
)

// ErrUntrustedModule reports a PKCS#11 module that coffer refuses to load
// because someone other than root or the user running coffer could have
// put it there, or because it lies inside the backing directory. Loading
// a module runs its code in coffer's process, and the module path comes
// from the volume config, which anyone who can write the backing directory
// can edit.
var ErrUntrustedModule = errors.New("refusing to load PKCS#11 module")

// ModuleTrustError is a module refused by checkModule: the path as named,
// and why.
type ModuleTrustError struct {
	Path   string
	Reason string
	// inBacking is set when the module lies inside the backing directory.
	inBacking bool
}

// Error returns one line naming the module and the reason.
func (e *ModuleTrustError) Error() string {
	return fmt.Sprintf("%v %s: %s", ErrUntrustedModule, e.Path, e.Reason)
}

// Unwrap returns ErrUntrustedModule.
func (e *ModuleTrustError) Unwrap() error { return ErrUntrustedModule }

// Hint tells the user how to make the module loadable, for a CLI "hint:"
// line.
func (e *ModuleTrustError) Hint() string {
	if e.inBacking {
		return "a module inside the backing directory is never loaded: install it outside, " +
			"owned by root in a directory only root can write (such as /usr/lib), and check " +
			"that the volume's config names the module you expect (coffer master list)"
	}
	return "install the module owned by root, not writable by group or others, in " +
		"directories only root can write (such as /usr/lib); if you did not put it " +
		"there, check the volume's config (coffer master list)"
}

// ErrPINInBacking reports a URI's pin-source inside the backing directory.
// A PIN kept next to the ciphertext protects nothing, and a PIN file
// planted there by whoever can write the backing directory, named in an
// edited config, would spend the token's PIN retries until it locks.
var ErrPINInBacking = errors.New("PIN file is inside the backing directory")
