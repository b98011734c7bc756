package masterkey

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/cofferfs/coffer/keys"
)

// Kind is a master-key kind that lives in its own package (pkcs11, tpm2,
// systemd-creds, aws-kms, dpapi, recovery) and registers itself here from an
// init function. The command imports the kinds it offers; this package never
// imports them.
type Kind struct {
	// Scheme is the URI scheme in lower case, without the colon.
	Scheme string
	// Name is the kind recorded in the config (keys.MasterEntry.Kind). It
	// may equal Scheme.
	Name string
	// Form is the URI form shown in help and error messages, for example
	// "pkcs11:token=LABEL;object=LABEL".
	Form string

	// Canonical checks uri (whose scheme is Scheme) and returns the form
	// recorded in the config. The canonical form must not hold a secret.
	// Errors should wrap ErrMalformed.
	Canonical func(uri string) (string, error)
	// Create makes a new master key at uri for "coffer keys create" and
	// returns a one-line description of what it made. Nil when the kind
	// has no creation step.
	Create func(ctx context.Context, ref Ref, opts Options) (string, error)
	// Enroll prepares the master key at ref for a volume. The returned
	// Enrollment's Kind and URI must be Name and ref.URI.
	Enroll func(ctx context.Context, ref Ref, opts Options) (keys.Enrollment, error)
	// Open opens the master key recorded in entry.
	Open func(ctx context.Context, entry keys.MasterEntry, opts Options) (keys.Master, error)
}

var registry struct {
	sync.RWMutex
	kinds map[string]Kind // by scheme
}

// Register adds a kind. It panics on a duplicate or incomplete kind: both
// are programming errors found by the first test that runs.
func Register(k Kind) {
	if k.Scheme == "" || k.Name == "" || k.Form == "" || k.Canonical == nil ||
		k.Enroll == nil || k.Open == nil {
		panic(fmt.Sprintf("masterkey: incomplete kind %q", k.Scheme))
	}
	if k.Scheme != strings.ToLower(k.Scheme) || !isScheme(k.Scheme) {
		panic(fmt.Sprintf("masterkey: bad scheme %q", k.Scheme))
	}
	registry.Lock()
	defer registry.Unlock()
	if registry.kinds == nil {
		registry.kinds = make(map[string]Kind)
	}
	if _, dup := registry.kinds[k.Scheme]; dup || builtin(k.Scheme) {
		panic(fmt.Sprintf("masterkey: kind %q registered twice", k.Scheme))
	}
	registry.kinds[k.Scheme] = k
}

// lookup returns the registered kind for scheme.
func lookup(scheme string) (Kind, bool) {
	registry.RLock()
	defer registry.RUnlock()
	k, ok := registry.kinds[scheme]
	return k, ok
}

// Supported lists the URI forms this build accepts, for error messages and
// help text.
func Supported() string {
	return strings.Join(Forms(), ", ")
}

// Forms returns the URI form of every kind this build accepts: the two
// built-in ones, key files and passphrases, then the registered kinds in
// alphabetical order.
func Forms() []string {
	registry.RLock()
	forms := make([]string, 0, len(registry.kinds))
	for _, k := range registry.kinds {
		forms = append(forms, k.Form)
	}
	registry.RUnlock()
	sort.Strings(forms)
	return append([]string{"file:///ABSOLUTE/PATH", "passphrase:"}, forms...)
}

// Create makes a new master key at uri, for kinds that have a creation
// step, and returns a description of what it made. Key files are created
// with keyfile.Create, not here.
func Create(ctx context.Context, uri string, opts Options) (string, error) {
	ref, err := Parse(uri)
	if err != nil {
		return "", err
	}
	k, ok := lookup(ref.scheme())
	if !ok || k.Create == nil {
		return "", fmt.Errorf("%w: %s master keys have no creation step", ErrNoCreate, ref.Kind)
	}
	return k.Create(ctx, ref, opts)
}
