package keys

import "errors"

// ErrWrongKey reports that a master key failed to unseal the ring: a wrong
// key file, a wrong passphrase, or a sealed copy that was altered. Callers
// tell the user to check the key they supplied.
var ErrWrongKey = errors.New("wrong master key")

// ErrUnsupportedVersion reports a volume config or sealed ring written by a
// newer version of coffer. Callers tell the user to upgrade.
var ErrUnsupportedVersion = errors.New("unsupported version")

// ErrNotInitialized reports a backing directory without .coffer/volume.json.
// Callers suggest running "coffer init".
var ErrNotInitialized = errors.New("volume is not initialised")

// ErrAlreadyInitialized reports an Init on a backing directory that already
// holds a .coffer folder. Init never overwrites an existing volume.
var ErrAlreadyInitialized = errors.New("volume is already initialised")

// ErrNotEmpty reports an Init on a backing directory that already holds
// files. coffer encrypts only files written through the mount, so such files
// would stay in plaintext and be unreadable through it.
var ErrNotEmpty = errors.New("backing directory is not empty")

// ErrUnknownKey reports an Unwrap with a ring key ID that this ring does not
// hold, for example a key added by a rotation after the ring was loaded.
// Callers may reload the ring and retry.
var ErrUnknownKey = errors.New("unknown ring key")

// ErrAuth reports a wrapped key that failed authentication: it was altered,
// torn by a crash, or bound to other associated data.
var ErrAuth = errors.New("wrapped key failed authentication")

// ErrConfigAltered reports a volume config that disagrees with what the
// sealed ring authenticates, such as its names mode: volume.json was edited.
// Callers tell the user to restore the config from a backup.
var ErrConfigAltered = errors.New("the config was altered")

// ErrMalformed reports a volume config or sealed ring payload that cannot be
// parsed or breaks a structural rule.
var ErrMalformed = errors.New("malformed data")

// ErrNoCandidate reports an Unlock left with no master key to try, such as
// a volume with only recovery keys unlocked without one.
var ErrNoCandidate = errors.New("no master key to try")

// ErrStaleRing reports a ring (a master key's sealed copy skipped by a
// rotation, or a running mount's) older than the volume's ring that cannot
// roll forward: the keys it holds were purged. Seal the ring to that master
// key again (coffer rotate without --skip-master) or remount.
var ErrStaleRing = errors.New("ring is older than the volume's and cannot roll forward")
