package keys

import (
	"context"
	"crypto/sha256"
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
	// copy is sealed without the check that it opens. Its entry must be
	// the one the sealed ring lists for its ID or, not listed, carry a tag
	// that verifies (Ring.CheckEntry, VerifySealOnly, CommitRing).
	SealOnly bool
	// RolledForward marks a master key whose copy held an older ring,
	// opened to the current one through the carried copies (a master key
	// a rotation skipped). That proves only that whoever sealed the copy
	// once held an older ring, as a revoked master key's holder did, so
	// its entry is checked the same way; a skipped master key's entry is
	// listed, or tagged again, by each commit since.
	RolledForward bool
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
//
// A master key that only seals is not authenticated by opening it: its
// entry is whatever volume.json says. Before sealing anything to the
// master keys OpenMasters returns, the caller checks them with
// VerifySealOnly (CommitRing does so again under the config lock).
func OpenMasters(ctx context.Context, cfg *Config, open OpenFunc, skip map[string]bool,
	sealOnly func(error) bool) (*Ring, []Opened, error) {
	var ring, carried *Ring
	ringPublic := false
	var opened []Opened
	for _, m := range cfg.Masters {
		if skip[m.ID] {
			continue
		}
		r, rolled, master, err := cfg.openMaster(ctx, m, open, sealOnly)
		if err != nil {
			WipeMasters(opened)
			return nil, nil, &MasterError{Master: m, Err: err}
		}
		opened = append(opened, Opened{Entry: m, Master: master, SealOnly: r == nil,
			RolledForward: rolled})
		switch {
		case r == nil:
		case !rolled && (ring == nil || ringPublic && !sealsToPublicKey(master)):
			ring, ringPublic = r, sealsToPublicKey(master)
		case rolled && carried == nil:
			carried = r
		}
	}
	// A copy of the current ring is preferred: a carried copy is made by
	// whoever holds an older ring key, not only by a commit. Among those,
	// one that only its master key's holder can have sealed is preferred
	// (PublicSealer): the volume.json order is anyone's to change.
	if ring == nil {
		ring = carried
	}
	if ring == nil {
		WipeMasters(opened)
		return nil, nil, errors.New("failed to open master keys: none of them can unseal the " +
			"ring (every one is skipped or seals only)")
	}
	return ring, opened, nil
}

// openMaster opens m and unseals its copy; rolled reports that the copy
// held an older ring, rolled forward. For a master that only seals it
// returns a nil ring.
func (c *Config) openMaster(ctx context.Context, m MasterEntry, open OpenFunc,
	sealOnly func(error) bool) (ring *Ring, rolled bool, master Master, err error) {
	master, err = open(m)
	if err != nil {
		return nil, false, nil, err
	}
	ring, err = UnsealRing(ctx, c.Ring.Sealed[m.ID], c.VolumeID, m.ID, master)
	if err != nil && sealOnly != nil && sealOnly(err) {
		return nil, false, master, nil
	}
	if err == nil {
		rolled = ring.Generation() < c.Ring.Generation
		ring, err = c.current(ring)
	}
	if err == nil {
		err = c.bindNames(ring)
	}
	if err != nil {
		if w, ok := master.(wiper); ok {
			w.Wipe()
		}
		return nil, false, nil, err
	}
	return ring, rolled, master, nil
}

// VerifySealOnly checks (Ring.CheckEntry) every master key in opened that
// only seals or whose copy was rolled forward, with ring, the ring
// OpenMasters returned: the ring is sealed to such a master key without
// opening proving that its entry (the public key it seals to, or the key
// file an older ring's holder sealed that ring with) is one a holder of
// the current ring chose. The entry must match the digest the sealed ring
// lists for its ID, or, not listed, carry a tag that verifies. It returns
// the *EntryError of the first one refused (matching ErrUntrustedMaster).
func VerifySealOnly(vol VolumeID, ring *Ring, opened []Opened) error {
	for _, o := range opened {
		if !o.SealOnly && !o.RolledForward {
			continue
		}
		if err := ring.CheckEntry(vol, o.Entry); err != nil {
			return err
		}
	}
	return nil
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
// A master key that only seals, or whose copy was rolled forward, must have
// an entry that passes ring.CheckEntry (listed digest, else tag), both
// before sealing and under the config lock (else an *EntryError matching
// ErrUntrustedMaster, nothing written); the entry of every opened master
// key must still be the one opened (else ErrConfigChanged). Each of them is
// tagged again under ring's primary key, as is a skipped master key whose
// entry passes CheckEntry, so that no tag is left under a key a later purge
// removes. The sealed payload lists the digest of each opened master key's
// entry and carries the listed digest of each skipped one (listEntries);
// ring takes that listing once the config is written.
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
	byID := make(map[string]Opened, len(opened))
	for _, o := range opened {
		if err := checkOpenedEntry(cfg, ring, o); err != nil {
			return nil, err
		}
		byID[o.Entry.ID] = o
	}
	entries, err := cfg.listEntries(ring, byID)
	if err != nil {
		return nil, err
	}
	next := ring.withEntries(entries)
	sealed := make(map[string][]byte, len(opened))
	for _, o := range opened {
		s, err := sealChecked(ctx, next, cfg.VolumeID, o)
		if err != nil {
			return nil, err
		}
		sealed[o.Entry.ID] = s
	}
	carry, err := next.sealCarry(cfg.VolumeID)
	if err != nil {
		return nil, err
	}

	written, err := UpdateConfig(backing, func(c *Config) error {
		if c.VolumeID != cfg.VolumeID || c.Ring.Generation != base {
			return fmt.Errorf("%w: the ring is at generation %d, expected %d; run the "+
				"command again", ErrConfigChanged, c.Ring.Generation, base)
		}
		kept := 0
		for _, m := range c.Masters {
			switch {
			case sealed[m.ID] != nil:
				if err := checkOpenedEntry(c, ring, byID[m.ID]); err != nil {
					return err
				}
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
		if err := c.retag(ring, sealed); err != nil {
			return err
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
	if err != nil {
		return nil, err
	}
	// The next commit of the same rotation checks against what this one
	// sealed, which carries every skipped entry's listing unchanged.
	ring.setEntries(next.Generation(), entries)
	return written, nil
}

// listEntries returns the entry listing a commit of ring to the master keys
// in opened seals (ringPayload.Entries): the digest of each opened master
// key's entry in c, and, for every other entry of c (a skipped master key),
// the digest the ring as opened lists for it, if any. A skipped entry is
// not proven by the commit, so the listing does not take it from c: a
// changed one stays refused by the next rotation that seals to it.
func (c *Config) listEntries(ring *Ring, opened map[string]Opened) (map[string][sha256.Size]byte,
	error) {
	prev := ring.state.Load().entries
	out := make(map[string][sha256.Size]byte, len(c.Masters))
	for _, m := range c.Masters {
		if _, ok := opened[m.ID]; ok {
			d, err := entryDigest(c.VolumeID, m)
			if err != nil {
				return nil, err
			}
			out[m.ID] = d
		} else if d, ok := prev[m.ID]; ok {
			out[m.ID] = d
		}
	}
	return out, nil
}

// checkOpenedEntry checks that c's entry of the opened master key o, if c
// still has one, is the entry that was opened, and, for a master key that
// only seals or was rolled forward, that its tag verifies with ring. The entry read now is
// checked, not o's copy: a commit before this one (the same rotation's) may
// have tagged it again under a key that o's copy predates.
func checkOpenedEntry(c *Config, ring *Ring, o Opened) error {
	e, ok := c.Master(o.Entry.ID)
	if !ok {
		return nil // removed meanwhile: nothing is sealed to it
	}
	if !sameEntry(e, o.Entry) {
		return fmt.Errorf("%w: the entry of master key %s changed after it was opened; run "+
			"the command again", ErrConfigChanged, e.ID)
	}
	if o.SealOnly || o.RolledForward {
		return ring.CheckEntry(c.VolumeID, e)
	}
	return nil
}

// retag tags, under ring's primary key, every entry of c that is in sealed
// (opened, so authenticated) and every other entry that passes
// ring.CheckEntry: the digest the ring as opened lists for it matches, or,
// not listed, its tag verifies. Other entries keep what they have: a
// skipped entry changed since the last rotation is not given a tag under
// a key that outlives the purge of the ring its changer held.
func (c *Config) retag(ring *Ring, sealed map[string][]byte) error {
	for i, m := range c.Masters {
		if sealed[m.ID] == nil && ring.CheckEntry(c.VolumeID, m) != nil {
			continue
		}
		t, err := ring.TagEntry(c.VolumeID, m)
		if err != nil {
			return err
		}
		c.Masters[i].Tag = t
	}
	return nil
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
