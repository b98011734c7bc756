package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/rs/zerolog"
)

// LockName is the lock file in DirName that serialises changes to the
// volume config between processes (see UpdateConfig).
const LockName = "lock"

// RotationLockName is the lock file in DirName that a rotation holds for
// its whole run (see LockRotation).
const RotationLockName = "rotation.lock"

// Errors of AddMaster and RemoveMaster that callers act on.
var (
	// ErrTooManyMasters reports an AddMaster on a volume that already has
	// MaxMasters master keys. Remove one first.
	ErrTooManyMasters = errors.New("volume has the most master keys allowed")
	// ErrLastMaster reports a RemoveMaster of a volume's only master key,
	// which would leave it impossible to unlock.
	ErrLastMaster = errors.New("cannot remove the last master key")
	// ErrNoMaster reports a master key ID the volume does not have.
	ErrNoMaster = errors.New("no such master key")
	// ErrDuplicateMaster reports an AddMaster of a master key the volume
	// already has (same kind, URI and parameters).
	ErrDuplicateMaster = errors.New("master key is already enrolled")
	// ErrConfigChanged reports that the volume's ring changed (a rotation,
	// a restore) between unlocking it and writing the new master key. Run
	// the command again.
	ErrConfigChanged = errors.New("volume config changed meanwhile")
	// ErrRotationRunning reports that a rotation (or another command that
	// takes the rotation lock) is running on the volume. Nothing was
	// written; run the command again once it has finished.
	ErrRotationRunning = errors.New("a rotation is in progress on this volume")
)

// UpdateConfig changes the config of backing under the config lock: it
// takes the lock, reads the config, calls change on it, and writes the
// result atomically (WriteConfig) unless change returns an error, in which
// case nothing is written. It returns the config as written.
//
// Every writer of an existing config goes through UpdateConfig, so two
// processes changing one volume at once (two admins adding master keys)
// are serialised and neither loses the other's change: each applies its
// change to the config as the other left it. Slow work (unlocking, sealing
// with an HSM or KMS) belongs before the call, not inside change.
func UpdateConfig(backing string, change func(*Config) error) (*Config, error) {
	if _, err := ReadConfig(backing); err != nil {
		return nil, err // before creating a lock file in a non-volume
	}
	unlock, err := lockConfig(backing)
	if err != nil {
		return nil, err
	}
	defer unlock()

	cfg, err := ReadConfig(backing)
	if err != nil {
		return nil, err
	}
	if err := change(cfg); err != nil {
		return nil, err
	}
	if err := WriteConfig(backing, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// AddOptions tunes AddMaster.
type AddOptions struct {
	// Logger receives an Info event for the added master key; the zero
	// value discards it.
	Logger zerolog.Logger
}

// AddMaster seals ring to the new master key m and records it, with its
// sealed copy, in the config of backing. ring is the volume's ring as
// Unlock returned it with one of the existing master keys.
//
// The sealed copy is made and checked to unseal before the config is
// touched: a master that cannot seal (a wrong key, an unreachable service)
// leaves the disk as it was. The change itself goes through UpdateConfig.
// AddMaster refuses a volume that already has MaxMasters master keys
// (ErrTooManyMasters), a master already enrolled (ErrDuplicateMaster), and
// a ring whose generation is no longer the config's (ErrConfigChanged).
func AddMaster(ctx context.Context, backing string, ring *Ring, m Enrollment,
	opts AddOptions) (MasterEntry, error) {
	if err := checkEnrollment(m); err != nil {
		return MasterEntry{}, err
	}
	cfg, err := ReadConfig(backing)
	if err != nil {
		return MasterEntry{}, err
	}
	if err := checkAdd(cfg, ring, m); err != nil {
		return MasterEntry{}, err
	}

	// Seal on a scratch copy, so that the master ID is fresh and bound
	// into the sealed copy before the config is locked.
	scratch := &Config{VolumeID: cfg.VolumeID, Masters: slices.Clone(cfg.Masters),
		Ring: RingConfig{Sealed: map[string][]byte{}}}
	payload, err := ring.marshalPayload(cfg.VolumeID)
	if err != nil {
		return MasterEntry{}, err
	}
	err = scratch.enroll(ctx, ring, m, payload)
	clear(payload)
	if err != nil {
		return MasterEntry{}, err
	}
	added := scratch.Masters[len(scratch.Masters)-1]
	sealed := scratch.Ring.Sealed[added.ID]

	// A rotation seals each ring it writes to the master keys it opened
	// when it started; a master key added meanwhile would keep a copy of
	// a ring whose keys the rotation then purges. The rotation lock keeps
	// the write out of a running rotation; a rotation that starts after
	// it reads the config with this master key in it. Shared, so that
	// two adds still run at once (UpdateConfig serialises them).
	unlock, err := lockRotationShared(backing)
	if err != nil {
		return MasterEntry{}, fmt.Errorf("failed to add master key: %w", err)
	}
	defer unlock()
	_, err = UpdateConfig(backing, func(c *Config) error {
		if c.VolumeID != cfg.VolumeID {
			return fmt.Errorf("%w: volume ID is now %s", ErrConfigChanged, c.VolumeID)
		}
		if err := checkAdd(c, ring, m); err != nil {
			return err
		}
		if _, used := c.Master(added.ID); used {
			return fmt.Errorf("%w: master key ID %s was taken", ErrConfigChanged, added.ID)
		}
		c.Masters = append(c.Masters, added)
		c.Ring.Sealed[added.ID] = sealed
		return nil
	})
	if err != nil {
		return MasterEntry{}, fmt.Errorf("failed to add master key: %w", err)
	}
	opts.Logger.Info().Str("backing", backing).Str("master", added.ID).Str("kind", added.Kind).
		Msg("master key added")
	return added, nil
}

func checkEnrollment(m Enrollment) error {
	e := MasterEntry{ID: "00000000", Kind: m.Kind, URI: m.URI, Params: m.Params}
	if err := e.validate(); err != nil {
		return fmt.Errorf("failed to add master key: %w", err)
	}
	if m.Master == nil {
		return errors.New("failed to add master key: master is nil")
	}
	return nil
}

// checkAdd checks that m can join cfg, and that ring is cfg's ring as of
// now: same generation and the same ring key IDs.
func checkAdd(cfg *Config, ring *Ring, m Enrollment) error {
	if len(cfg.Masters) >= MaxMasters {
		return fmt.Errorf("%w: it has %d, the limit; remove one first", ErrTooManyMasters,
			len(cfg.Masters))
	}
	for _, e := range cfg.Masters {
		if e.Kind == m.Kind && e.URI == m.URI && bytes.Equal(e.Params, m.Params) {
			return fmt.Errorf("%w: master key %s is %s", ErrDuplicateMaster, e.ID, RedactURI(e.URI))
		}
	}
	if ring.Generation() != cfg.Ring.Generation {
		return fmt.Errorf("%w: the ring is at generation %d, the unlocked copy at %d; run "+
			"the command again", ErrConfigChanged, cfg.Ring.Generation, ring.Generation())
	}
	got, want := ring.Keys(), cfg.Ring.Keys
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		same = got[i].ID == want[i].ID
	}
	if !same {
		return fmt.Errorf("%w: the unlocked ring's keys differ from the config's",
			ErrConfigChanged)
	}
	return nil
}

// RemoveOptions adjust RemoveMaster.
type RemoveOptions struct {
	// Check, when not nil, is called with the config as it is before the
	// removal and the entry to remove, both before the config is locked
	// and again under the lock; an error refuses the removal. It carries
	// policies of the caller, such as keeping a master key that unlocks
	// without a person.
	Check func(c *Config, m MasterEntry) error
}

// RemoveMaster removes the master key id and its sealed ring copy from the
// config of backing, through UpdateConfig. It needs no key: anyone who can
// write the config can drop a sealed copy. It refuses to remove the only
// master key (ErrLastMaster); there is no override. A mount that is running
// keeps its ring; the next unlock cannot use the removed key.
func RemoveMaster(backing, id string, opts RemoveOptions) (MasterEntry, error) {
	var removed MasterEntry
	check := func(c *Config) error {
		i := slices.IndexFunc(c.Masters, func(m MasterEntry) bool { return m.ID == id })
		if i < 0 {
			return fmt.Errorf("%w %q (have %s)", ErrNoMaster, id, masterIDs(c))
		}
		if len(c.Masters) == 1 {
			return fmt.Errorf("%w %s: the volume could no longer be unlocked; add another "+
				"master key first", ErrLastMaster, id)
		}
		if opts.Check != nil {
			return opts.Check(c, c.Masters[i])
		}
		return nil
	}
	// Checked before locking too, so that a refusal leaves no lock file.
	cfg, err := ReadConfig(backing)
	if err == nil {
		err = check(cfg)
	}
	if err != nil {
		return MasterEntry{}, fmt.Errorf("failed to remove master key: %w", err)
	}

	_, err = UpdateConfig(backing, func(c *Config) error {
		if err := check(c); err != nil {
			return err
		}
		i := slices.IndexFunc(c.Masters, func(m MasterEntry) bool { return m.ID == id })
		removed = c.Masters[i]
		c.Masters = slices.Delete(c.Masters, i, i+1)
		delete(c.Ring.Sealed, id)
		return nil
	})
	if err != nil {
		return MasterEntry{}, fmt.Errorf("failed to remove master key: %w", err)
	}
	return removed, nil
}

// masterIDs lists the master key IDs of c, comma-separated.
func masterIDs(c *Config) string {
	var b bytes.Buffer
	for i, m := range c.Masters {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m.ID)
	}
	return b.String()
}

// ReplaceOptions are the options of ReplaceMaster.
type ReplaceOptions struct {
	// Logger receives an Info event for the replacement; the zero value
	// discards it.
	Logger zerolog.Logger
	// Check, when not nil, is called under the config lock with the config
	// as it is before the change, the entry to replace and the kind of the
	// new master key; an error refuses the replacement and nothing is
	// written. It carries policies of the caller that a concurrent change
	// of the config could otherwise slip past, such as keeping a master key
	// that unlocks without a person.
	Check func(c *Config, old MasterEntry, kind string) error
}

// ReplaceMaster enrolls m in place of master key old in the config of
// backing, in one atomic config write: the new master key's sealed copy is
// made and checked first, then the config gains it and loses old together,
// so that at every moment exactly one of them is enrolled besides the
// others. ring is the volume's ring as unlocked. No file is touched.
func ReplaceMaster(ctx context.Context, backing string, ring *Ring, old string, m Enrollment,
	opts ReplaceOptions) (MasterEntry, error) {
	if err := checkEnrollment(m); err != nil {
		return MasterEntry{}, err
	}
	cfg, err := ReadConfig(backing)
	if err != nil {
		return MasterEntry{}, err
	}
	if _, ok := cfg.Master(old); !ok {
		return MasterEntry{}, fmt.Errorf("failed to replace master key: %w %q (have %s)",
			ErrNoMaster, old, masterIDs(cfg))
	}
	// Room for one more during the check: the old key leaves in the write.
	trimmed := *cfg
	trimmed.Masters = slices.DeleteFunc(slices.Clone(cfg.Masters),
		func(e MasterEntry) bool { return e.ID == old })
	if err := checkAdd(&trimmed, ring, m); err != nil {
		return MasterEntry{}, err
	}

	scratch := &Config{VolumeID: cfg.VolumeID, Masters: slices.Clone(cfg.Masters),
		Ring: RingConfig{Sealed: map[string][]byte{}}}
	payload, err := ring.marshalPayload(cfg.VolumeID)
	if err != nil {
		return MasterEntry{}, err
	}
	err = scratch.enroll(ctx, ring, m, payload)
	clear(payload)
	if err != nil {
		return MasterEntry{}, err
	}
	added := scratch.Masters[len(scratch.Masters)-1]
	sealed := scratch.Ring.Sealed[added.ID]

	unlock, err := lockRotationShared(backing) // as in AddMaster
	if err != nil {
		return MasterEntry{}, fmt.Errorf("failed to replace master key: %w", err)
	}
	defer unlock()
	_, err = UpdateConfig(backing, func(c *Config) error {
		i := slices.IndexFunc(c.Masters, func(e MasterEntry) bool { return e.ID == old })
		if c.VolumeID != cfg.VolumeID || i < 0 {
			return fmt.Errorf("%w: master key %s or the volume changed", ErrConfigChanged, old)
		}
		if opts.Check != nil {
			if err := opts.Check(c, c.Masters[i], m.Kind); err != nil {
				return err
			}
		}
		t := *c
		t.Masters = slices.Delete(slices.Clone(c.Masters), i, i+1)
		if err := checkAdd(&t, ring, m); err != nil {
			return err
		}
		if _, used := c.Master(added.ID); used {
			return fmt.Errorf("%w: master key ID %s was taken", ErrConfigChanged, added.ID)
		}
		c.Masters = append(t.Masters, added)
		delete(c.Ring.Sealed, old)
		c.Ring.Sealed[added.ID] = sealed
		return nil
	})
	if err != nil {
		return MasterEntry{}, fmt.Errorf("failed to replace master key: %w", err)
	}
	opts.Logger.Info().Str("backing", backing).Str("old", old).Str("master", added.ID).
		Str("kind", added.Kind).Msg("master key replaced")
	return added, nil
}
