// Package passphrase implements the passphrase master key, "passphrase:".
// The passphrase goes through Argon2id (RFC 9106) with a random salt and a
// cost recorded in the master entry's params; the 32-byte result seals the
// ring with XChaCha20-Poly1305. Where the passphrase comes from (a terminal
// prompt, a file) is the caller's business: this package takes a
// keys.Secret.
package passphrase

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/argon2"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/box"
)

// Kind is the master-key kind recorded in the config.
const Kind = "passphrase"

// Algorithm and version recorded in the params.
const (
	Algorithm = "argon2id"
	Version   = argon2.Version // 0x13 = 19
)

// Limits on params read from a config. They refuse absurd costs (a hostile
// or mistyped config must not make unlocking take days or all memory) and
// salts too short to be one.
const (
	MaxTime      = 1024
	MaxMemoryKiB = 4 << 20 // 4 GiB
	MinSaltSize  = 8
	MaxSaltSize  = 64
	SaltSize     = 16 // the size NewParams draws
)

// ErrEmpty reports an empty passphrase at enrollment.
var ErrEmpty = errors.New("passphrase is empty")

// Cost is the Argon2id cost: passes over memory, memory in KiB, and lanes.
type Cost struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// DefaultCost returns the cost used unless the caller overrides it: t=3,
// m=64 MiB, p=4, the second recommended option of RFC 9106 section 4 with a
// higher pass count.
func DefaultCost() Cost {
	return Cost{Time: 3, MemoryKiB: 64 << 10, Threads: 4}
}

// Validate checks that the cost is within the limits Argon2id and this
// package accept.
func (c Cost) Validate() error {
	switch {
	case c.Time == 0 || c.Time > MaxTime:
		return fmt.Errorf("argon2id time %d is outside 1..%d", c.Time, MaxTime)
	case c.Threads == 0:
		return errors.New("argon2id threads must be at least 1")
	case c.MemoryKiB < 8*uint32(c.Threads):
		return fmt.Errorf("argon2id memory %d KiB is below 8 KiB per thread (%d threads)",
			c.MemoryKiB, c.Threads)
	case c.MemoryKiB > MaxMemoryKiB:
		return fmt.Errorf("argon2id memory %d KiB is above the %d KiB limit",
			c.MemoryKiB, MaxMemoryKiB)
	}
	return nil
}

// Params are the public Argon2id parameters of one passphrase master, as
// recorded in the config:
//
//	{"algorithm":"argon2id","version":19,"time":3,"memory_kib":65536,
//	 "threads":4,"salt":"<base64>"}
type Params struct {
	Cost
	Salt []byte
}

// paramsJSON is the config form of Params.
type paramsJSON struct {
	Algorithm string `json:"algorithm"`
	Version   int    `json:"version"`
	Cost
	Salt []byte `json:"salt"`
}

// NewParams returns params with cost c and a fresh random salt.
func NewParams(c Cost) (Params, error) {
	if err := c.Validate(); err != nil {
		return Params{}, err
	}
	p := Params{Cost: c, Salt: make([]byte, SaltSize)}
	if _, err := rand.Read(p.Salt); err != nil {
		return Params{}, fmt.Errorf("failed to read random salt: %w", err)
	}
	return p, nil
}

// Validate checks the cost and the salt length.
func (p Params) Validate() error {
	if err := p.Cost.Validate(); err != nil {
		return err
	}
	if len(p.Salt) < MinSaltSize || len(p.Salt) > MaxSaltSize {
		return fmt.Errorf("argon2id salt is %d bytes, want %d to %d",
			len(p.Salt), MinSaltSize, MaxSaltSize)
	}
	return nil
}

// MarshalJSON encodes the params in their config form.
func (p Params) MarshalJSON() ([]byte, error) {
	return json.Marshal(paramsJSON{Algorithm: Algorithm, Version: Version, Cost: p.Cost,
		Salt: p.Salt})
}

// UnmarshalJSON decodes the config form strictly and validates it.
func (p *Params) UnmarshalJSON(b []byte) error {
	var j paramsJSON
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&j); err != nil {
		return fmt.Errorf("malformed passphrase params: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("malformed passphrase params: trailing data")
	}
	if j.Algorithm != Algorithm || j.Version != Version {
		return fmt.Errorf("unsupported passphrase params %q version %d, want %q version %d",
			j.Algorithm, j.Version, Algorithm, Version)
	}

	q := Params{Cost: j.Cost, Salt: j.Salt}
	if err := q.Validate(); err != nil {
		return fmt.Errorf("invalid passphrase params: %w", err)
	}
	*p = q
	return nil
}

// ParseParams decodes and validates params from a master entry.
func ParseParams(raw json.RawMessage) (Params, error) {
	var p Params
	if len(raw) == 0 {
		return p, errors.New("passphrase master has no params")
	}
	if err := p.UnmarshalJSON(raw); err != nil {
		return Params{}, err
	}
	return p, nil
}

// DeriveKey returns the 32-byte Argon2id key of pass under p.
func DeriveKey(pass *keys.Secret, p Params) (*keys.Secret, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	k := argon2.IDKey(pass.InsecureBytes(), p.Salt, p.Time, p.MemoryKiB, p.Threads, box.KeySize)
	return keys.SecretFromBytes(k), nil
}

// Enroll returns a new passphrase master for pass with cost c and a fresh
// salt, and the params to record. It refuses an empty passphrase. pass is
// only read; the caller still owns and wipes it.
func Enroll(pass *keys.Secret, c Cost) (keys.Master, Params, error) {
	if pass.Len() == 0 {
		return nil, Params{}, ErrEmpty
	}
	p, err := NewParams(c)
	if err != nil {
		return nil, Params{}, err
	}
	m, err := Open(pass, p)
	if err != nil {
		return nil, Params{}, err
	}
	return m, p, nil
}

// Open returns the master for pass under recorded params p. A wrong
// passphrase shows only when unsealing, as keys.ErrWrongKey.
func Open(pass *keys.Secret, p Params) (keys.Master, error) {
	k, err := DeriveKey(pass, p)
	if err != nil {
		return nil, err
	}
	return box.New(k)
}
