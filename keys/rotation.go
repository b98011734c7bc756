package keys

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"time"
)

// RotationName is the file in DirName that records a ring rotation in
// progress, so that an interrupted rotation resumes with the key it added
// instead of adding another.
const RotationName = "rotation.json"

const (
	rotationVersion = 1
	maxRotationSize = 64 << 10
)

// Rotation is the state of a ring rotation in progress.
type Rotation struct {
	Version int       `json:"version"`
	Target  uint32    `json:"target"`  // the new primary ring key
	Retire  []uint32  `json:"retire"`  // the keys it replaces
	Started time.Time `json:"started"` // when the rotation began
}

// ReadRotation returns the rotation in progress in backing, or nil when
// there is none.
func ReadRotation(backing string) (*Rotation, error) {
	f, err := os.Open(filepath.Join(backing, DirName, RotationName))
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to open rotation state: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRotationSize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read rotation state: %w", err)
	}
	if len(b) > maxRotationSize {
		return nil, fmt.Errorf("%w: rotation state is larger than %d bytes", ErrMalformed,
			maxRotationSize)
	}
	var r Rotation
	if err := decodeVersioned(b, &r, rotationVersion, "rotation state"); err != nil {
		return nil, err
	}
	if r.Target == 0 {
		return nil, fmt.Errorf("%w: rotation state has no target key", ErrMalformed)
	}
	return &r, nil
}

// WriteRotation records r as the rotation in progress in backing,
// atomically and durably.
func WriteRotation(backing string, r Rotation) error {
	r.Version = rotationVersion
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode rotation state: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(backing, DirName), RotationName,
		append(b, '\n')); err != nil {
		return fmt.Errorf("failed to write rotation state: %w", err)
	}
	return nil
}

// ClearRotation removes the rotation state of backing, durably.
func ClearRotation(backing string) error {
	dir := filepath.Join(backing, DirName)
	err := os.Remove(filepath.Join(dir, RotationName))
	if err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("failed to remove rotation state: %w", err)
	}
	return syncDir(dir)
}

// Opened is a master key of the volume, opened and proven to unseal its
// sealed copy of the ring.
type Opened struct {
	Entry  MasterEntry
	Master Master
	// SealOnly marks a master key that seals to a public key and cannot
	// unseal here (a recovery key whose private half is on paper): its
	// copy is sealed without the check that it opens, which a public key
	// taken from the config does not need.
	SealOnly bool
}

// MasterError reports the master key that could not be opened or did not
// unseal its copy of the ring.
type MasterError struct {
	Master MasterEntry
	Err    error
}

// Error names the master key and the cause.
func (e *MasterError) Error() string {
	return fmt.Sprintf("master key %s (%s): %v", e.Master.ID, RedactURI(e.Master.URI), e.Err)
}

// Unwrap returns the cause.
func (e *MasterError) Unwrap() error { return e.Err }

// OpenMasters opens every master key of cfg except those in skip and checks
// that each one unseals its copy of the ring, so that sealing a new ring to
// them cannot lock anyone out (a mistyped passphrase opens a master that
// seals to the wrong key). It returns the config's ring and the opened
// master keys, which the caller wipes with WipeMasters; on any failure it
// returns a *MasterError and wipes what it opened. sealOnly, if not nil,
// says whether an unseal error means a master key that only seals (see
// Opened.SealOnly); at least one master key must unseal.
func OpenMasters(ctx context.Context, cfg *Config, open OpenFunc, skip map[string]bool,
	sealOnly func(error) bool) (*Ring, []Opened, error) {
	var ring *Ring
	var opened []Opened
	for _, m := range cfg.Masters {
		if skip[m.ID] {
			continue
		}
		r, master, err := cfg.openMaster(ctx, m, open, sealOnly)
		if err != nil {
			WipeMasters(opened)
			return nil, nil, &MasterError{Master: m, Err: err}
		}
		opened = append(opened, Opened{Entry: m, Master: master, SealOnly: r == nil})
		if ring == nil {
			ring = r
		}
	}
	if ring == nil {
		WipeMasters(opened)
		return nil, nil, errors.New("failed to open master keys: none of them can unseal the " +
			"ring (every one is skipped or seals only)")
	}
	return ring, opened, nil
}

// openMaster opens m and unseals its copy. For a master that only seals it
// returns a nil ring.
func (c *Config) openMaster(ctx context.Context, m MasterEntry, open OpenFunc,
	sealOnly func(error) bool) (*Ring, Master, error) {
	master, err := open(m)
	if err != nil {
		return nil, nil, err
	}
	ring, err := UnsealRing(ctx, c.Ring.Sealed[m.ID], c.VolumeID, m.ID, master)
	if err != nil && sealOnly != nil && sealOnly(err) {
		return nil, master, nil
	}
	if err == nil {
		ring, err = c.current(ring)
	}
	if err == nil {
		err = c.bindNames(ring)
	}
	if err != nil {
		if w, ok := master.(wiper); ok {
			w.Wipe()
		}
		return nil, nil, err
	}
	return ring, master, nil
}

// WipeMasters wipes the key material of opened master keys.
func WipeMasters(opened []Opened) {
	for _, o := range opened {
		if w, ok := o.Master.(wiper); ok {
			w.Wipe()
		}
	}
}

// CommitRing makes ring the volume's ring: it seals ring to every opened
// master key (checking that each copy unseals), seals the carried copies,
// and writes the config through UpdateConfig, provided the config's ring is
// still at generation base (else ErrConfigChanged). It returns the config
// as written.
//
// Only the master keys in skipped keep their older sealed copy, which rolls
// forward through the carried copies until the keys it holds are purged.
// Under the config lock, CommitRing refuses (ErrConfigChanged, nothing
// written) when the config has a master key that is neither opened nor
// skipped — one added after the caller opened the master keys, whose copy
// would otherwise be left behind and cut off by a later purge — and when no
// opened master key is left in the config (all removed meanwhile).
func CommitRing(ctx context.Context, backing string, base uint64, ring *Ring,
	opened []Opened, skipped map[string]bool) (*Config, error) {
	cfg, err := ReadConfig(backing)
	if err != nil {
		return nil, err
	}
	sealed := make(map[string][]byte, len(opened))
	for _, o := range opened {
		s, err := sealChecked(ctx, ring, cfg.VolumeID, o)
		if err != nil {
			return nil, err
		}
		sealed[o.Entry.ID] = s
	}
	carry, err := ring.sealCarry(cfg.VolumeID)
	if err != nil {
		return nil, err
	}

	return UpdateConfig(backing, func(c *Config) error {
		if c.VolumeID != cfg.VolumeID || c.Ring.Generation != base {
			return fmt.Errorf("%w: the ring is at generation %d, expected %d; run the "+
				"command again", ErrConfigChanged, c.Ring.Generation, base)
		}
		kept := 0
		for _, m := range c.Masters {
			switch {
			case sealed[m.ID] != nil:
				kept++
			case !skipped[m.ID]:
				return fmt.Errorf("%w: master key %s was added after the master keys were "+
					"opened; run the command again to seal the ring to it too",
					ErrConfigChanged, m.ID)
			}
		}
		if kept == 0 {
			return fmt.Errorf("%w: every master key that was opened has been removed "+
				"meanwhile; run the command again", ErrConfigChanged)
		}
		for id, s := range sealed {
			if _, ok := c.Master(id); ok {
				c.Ring.Sealed[id] = s
			}
		}
		c.Ring.Generation = ring.Generation()
		c.Ring.Keys = ring.Keys()
		c.Ring.Carry = carry
		return nil
	})
}

// sealChecked seals ring to the opened master o and checks the copy.
func sealChecked(ctx context.Context, ring *Ring, vol VolumeID, o Opened) ([]byte, error) {
	payload, err := ring.marshalPayload(vol)
	if err != nil {
		return nil, err
	}
	defer clear(payload)
	ad := RingAD(vol, o.Entry.ID)
	s, err := o.Master.Seal(ctx, payload, ad)
	if err != nil {
		return nil, &MasterError{Master: o.Entry, Err: fmt.Errorf("failed to seal ring: %w", err)}
	}
	if o.SealOnly {
		return s, nil
	}
	back, err := o.Master.Unseal(ctx, s, ad)
	if err != nil {
		return nil, &MasterError{Master: o.Entry,
			Err: fmt.Errorf("failed to check sealed ring: %w", err)}
	}
	same := subtle.ConstantTimeCompare(back, payload) == 1
	clear(back)
	if !same {
		return nil, &MasterError{Master: o.Entry,
			Err: errors.New("failed to check sealed ring: unsealed payload differs")}
	}
	return s, nil
}
