package keys

import (
	"context"
	"encoding/json"
)

// Master is one master key, kept outside the backing directory: a key file,
// a passphrase, and later an HSM, a TPM or a KMS. It seals and unseals the
// ring payload; it never hands out its key.
//
// Unseal returns an error wrapping ErrWrongKey when authentication fails.
// Implementations are safe for concurrent use. An implementation that holds
// key material in memory should also provide Wipe(), which Unlock calls on
// masters it opened once it is done with them.
type Master interface {
	Seal(ctx context.Context, plaintext, associatedData []byte) ([]byte, error)
	Unseal(ctx context.Context, sealed, associatedData []byte) ([]byte, error)
}

// PublicSealer is implemented by a Master whose Seal needs only public
// values (a recovery key seals to a public key): anyone who holds the ring
// can write a copy that it unseals, with whatever payload they choose.
// OpenMasters therefore takes the ring, and the entry listing that comes
// with it (Ring.CheckEntry), from another master key's copy when one opens.
type PublicSealer interface {
	SealsToPublicKey() bool
}

func sealsToPublicKey(m Master) bool {
	p, ok := m.(PublicSealer)
	return ok && p.SealsToPublicKey()
}

// wiper is a Master that holds key material to wipe after use.
type wiper interface{ Wipe() }

// Enrollment is a master key to add to a volume: the Master itself and what
// the config records about it. URI must not hold a secret; Params holds the
// kind's public parameters as a JSON value, or nil.
type Enrollment struct {
	Kind   string
	URI    string
	Params json.RawMessage
	Master Master
}

// OpenFunc opens the master key recorded in a config entry, for Unlock.
type OpenFunc func(MasterEntry) (Master, error)
