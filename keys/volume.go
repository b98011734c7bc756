package keys

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
)

// InitOptions tunes Init.
type InitOptions struct {
	// Logger receives Info and Debug events; the zero value discards them.
	Logger zerolog.Logger

	// PlaintextNames stores entry names, symbolic link targets and
	// extended attributes unencrypted; by default they are encrypted.
	PlaintextNames bool

	// MaxKeyAgeDays, when not 0, records a key policy (Policy) in the
	// new config: the primary ring key's maximum age in days.
	MaxKeyAgeDays int
}

// Init creates a volume in backing: a volume ID, a new ring, and a config
// holding one sealed copy of the ring per master key, in .coffer (mode 0700).
//
// Init refuses a backing directory that does not exist, that already has a
// .coffer folder (ErrAlreadyInitialized: it never overwrites a volume), or
// that holds any other entry (ErrNotEmpty). Every master seals, and each
// sealed copy is checked to unseal, before the disk is touched; on any
// failure backing is left as it was. Init does not wipe the masters: that
// is left to the caller, which may still need them.
func Init(ctx context.Context, backing string, masters []Enrollment,
	opts InitOptions) (*Config, *Ring, error) {
	if err := checkEnrollments(masters); err != nil {
		return nil, nil, err
	}
	if err := checkInitTarget(backing); err != nil {
		return nil, nil, err
	}

	names := NamesEncrypted
	if opts.PlaintextNames {
		names = NamesPlaintext
	}
	cfg, ring, err := newVolume(ctx, masters, names)
	if err != nil {
		return nil, nil, err
	}
	if opts.MaxKeyAgeDays != 0 {
		cfg.Policy = &Policy{MaxKeyAgeDays: opts.MaxKeyAgeDays}
	}
	if err := createVolume(backing, cfg); err != nil {
		return nil, nil, err
	}

	opts.Logger.Info().Str("backing", backing).Stringer("volume", cfg.VolumeID).
		Int("masters", len(cfg.Masters)).Uint32("ring_key", ring.Primary().ID).
		Msg("volume initialised")
	return cfg, ring, nil
}

func checkEnrollments(masters []Enrollment) error {
	if len(masters) == 0 || len(masters) > MaxMasters {
		return fmt.Errorf("failed to initialise volume: need 1 to %d master keys, got %d",
			MaxMasters, len(masters))
	}
	for i, m := range masters {
		e := MasterEntry{ID: "00000000", Kind: m.Kind, URI: m.URI, Params: m.Params}
		if err := e.validate(); err != nil {
			return fmt.Errorf("failed to initialise volume: master key %d: %w", i+1, err)
		}
		if m.Master == nil {
			return fmt.Errorf("failed to initialise volume: master key %d is nil", i+1)
		}
	}
	return nil
}

// checkInitTarget checks that backing is an existing, empty directory.
func checkInitTarget(backing string) error {
	if err := checkBackingDir(backing); err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(backing, DirName)); err == nil {
		return alreadyInitialized(backing)
	} else if !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("failed to check backing directory: %w", err)
	}

	d, err := os.Open(backing)
	if err != nil {
		return fmt.Errorf("failed to open backing directory: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("failed to list backing directory: %w", err)
	}
	if len(names) > 0 {
		return fmt.Errorf("%w: %s holds %q; coffer encrypts only files written through "+
			"the mount, so start from an empty directory", ErrNotEmpty, backing, names[0])
	}
	return nil
}

func alreadyInitialized(backing string) error {
	if _, err := os.Stat(ConfigPath(backing)); err != nil {
		return fmt.Errorf("%w: %s has a %s folder without %s: another init is creating the "+
			"volume right now, or one was interrupted (then remove the folder and run init "+
			"again)", ErrAlreadyInitialized, backing, DirName, ConfigName)
	}
	return fmt.Errorf("%w: %s already holds a volume", ErrAlreadyInitialized, backing)
}

// newVolume builds the config and ring in memory, sealing the ring once per
// master and checking that each sealed copy opens.
func newVolume(ctx context.Context, masters []Enrollment, names string) (*Config, *Ring,
	error) {
	vol, err := NewVolumeID()
	if err != nil {
		return nil, nil, err
	}
	ring, err := NewRing()
	if err != nil {
		return nil, nil, err
	}
	ring.names = names
	cfg := &Config{
		Version:  ConfigVersion,
		VolumeID: vol,
		Format:   FileFormat,
		Created:  now(),
		Names:    names,
		Ring: RingConfig{Generation: ring.Generation(), Keys: ring.Keys(),
			Sealed: make(map[string][]byte, len(masters))},
	}

	payload, err := ring.marshalPayload(vol)
	if err != nil {
		return nil, nil, err
	}
	defer clear(payload)
	for _, m := range masters {
		if err := cfg.enroll(ctx, ring, m, payload); err != nil {
			return nil, nil, err
		}
	}
	return cfg, ring, nil
}

// enroll adds master m to cfg with a fresh ID, its sealed ring copy
// (checking that the copy unseals) and its tag under ring, whose payload is
// payload.
func (c *Config) enroll(ctx context.Context, ring *Ring, m Enrollment, payload []byte) error {
	id, err := c.newMasterID()
	if err != nil {
		return err
	}
	ad := RingAD(c.VolumeID, id)
	sealed, err := m.Master.Seal(ctx, payload, ad)
	if err != nil {
		return fmt.Errorf("failed to seal ring with master key %s: %w", RedactURI(m.URI), err)
	}
	back, err := m.Master.Unseal(ctx, sealed, ad)
	if err != nil {
		return fmt.Errorf("failed to check ring sealed with master key %s: %w",
			RedactURI(m.URI), err)
	}
	same := subtle.ConstantTimeCompare(back, payload) == 1
	clear(back)
	if !same {
		return fmt.Errorf("failed to check ring sealed with master key %s: unsealed payload "+
			"differs", RedactURI(m.URI))
	}

	e := MasterEntry{ID: id, Kind: m.Kind, URI: m.URI, Added: now(), Params: m.Params}
	if e.Tag, err = ring.TagEntry(c.VolumeID, e); err != nil {
		return err
	}
	c.Masters = append(c.Masters, e)
	c.Ring.Sealed[id] = sealed
	return nil
}

// SealRing seals ring with master m for the master entry masterID of volume
// vol, as Init does for each master. Rotation and enrolling another master
// use it to produce a new sealed copy.
func SealRing(ctx context.Context, ring *Ring, vol VolumeID, masterID string,
	m Master) ([]byte, error) {
	payload, err := ring.marshalPayload(vol)
	if err != nil {
		return nil, err
	}
	defer clear(payload)
	sealed, err := m.Seal(ctx, payload, RingAD(vol, masterID))
	if err != nil {
		return nil, fmt.Errorf("failed to seal ring: %w", err)
	}
	return sealed, nil
}

// UnsealRing opens a sealed ring copy of volume vol for master entry
// masterID with master m, and checks that the ring names vol. A failed
// authentication returns an error wrapping ErrWrongKey.
func UnsealRing(ctx context.Context, sealed []byte, vol VolumeID, masterID string,
	m Master) (*Ring, error) {
	payload, err := m.Unseal(ctx, sealed, RingAD(vol, masterID))
	if err != nil {
		return nil, err
	}
	defer clear(payload)
	got, ring, err := unmarshalPayload(payload)
	if err != nil {
		return nil, fmt.Errorf("failed to decode sealed ring: %w", err)
	}
	if got != vol {
		return nil, fmt.Errorf("%w: sealed ring belongs to volume %s, not %s",
			ErrMalformed, got, vol)
	}
	return ring, nil
}

// newMasterID returns 8 random lowercase hex characters not used in c.
func (c *Config) newMasterID() (string, error) {
	for {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("failed to read random bytes: %w", err)
		}
		id := hex.EncodeToString(b[:])
		if _, used := c.Master(id); !used {
			return id, nil
		}
	}
}

// createVolume creates .coffer and writes cfg into it. On failure it removes
// the folder it created, so backing is left as it was.
func createVolume(backing string, cfg *Config) error {
	dir := filepath.Join(backing, DirName)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, iofs.ErrExist) {
			return alreadyInitialized(backing)
		}
		return fmt.Errorf("failed to create %s: %w", dir, err)
	}

	err := os.Chmod(dir, 0o700) // in case the umask dropped bits we want
	if err == nil {
		err = WriteConfig(backing, cfg)
	}
	if err == nil {
		err = syncDir(backing)
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return fmt.Errorf("failed to create volume: %w", err)
	}
	return nil
}

// UnlockOptions tunes Unlock.
type UnlockOptions struct {
	// Only, when set, is the ID of the one master key to try.
	Only string
	// Kind, when set (and Only is not), limits the master keys tried to
	// those of this kind, such as "recovery" when a recovery key is given.
	Kind string
	// SkipKind, when set (and Only is not), leaves out the master keys of
	// this kind, such as "recovery" when no recovery key is at hand.
	SkipKind string
	// Logger receives Debug and Info events; the zero value discards them.
	Logger zerolog.Logger
	// Failed, when set, is called for each master key that was tried and
	// did not unlock the volume, with the reason, as soon as it failed,
	// whether or not a later master key succeeds. The audit log uses it.
	Failed func(m MasterEntry, err error)
}

// UnlockError reports that no master key unlocked the volume, with the
// reason for each one tried. It matches ErrWrongKey with errors.Is, and each
// attempt's error too.
type UnlockError struct {
	Attempts []Attempt
}

// Attempt is one master key that failed to unlock the volume.
type Attempt struct {
	Master MasterEntry
	Err    error
}

// Error lists each master key tried and why it failed.
func (e *UnlockError) Error() string {
	parts := make([]string, len(e.Attempts))
	for i, a := range e.Attempts {
		parts[i] = fmt.Sprintf("master %s (%s): %v", a.Master.ID, RedactURI(a.Master.URI), a.Err)
	}
	return "no master key unlocked the volume: " + strings.Join(parts, "; ")
}

// Unwrap returns ErrWrongKey followed by each attempt's error.
func (e *UnlockError) Unwrap() []error {
	errs := []error{ErrWrongKey}
	for _, a := range e.Attempts {
		errs = append(errs, a.Err)
	}
	return errs
}

// Unlock opens the volume's ring with the first master key that works,
// trying them in config order, or only the one with ID opts.Only. It returns
// the ring and the master entry that unsealed it, or an *UnlockError (which
// matches ErrWrongKey) when none did. Unlock never writes to the disk.
func Unlock(ctx context.Context, cfg *Config, open OpenFunc,
	opts UnlockOptions) (*Ring, MasterEntry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, MasterEntry{}, fmt.Errorf("failed to unlock volume: %w", err)
	}
	masters, err := cfg.candidates(opts.Only, opts.Kind, opts.SkipKind)
	if err != nil {
		return nil, MasterEntry{}, err
	}

	uerr := &UnlockError{}
	for _, m := range masters {
		if err := ctx.Err(); err != nil {
			return nil, MasterEntry{}, fmt.Errorf("failed to unlock volume: %w", err)
		}
		log := opts.Logger.With().Str("master", m.ID).Str("kind", m.Kind).Logger()
		ring, err := cfg.unlockWith(ctx, m, open)
		if err != nil {
			log.Debug().Err(err).Msg("master key did not unlock the volume")
			uerr.Attempts = append(uerr.Attempts, Attempt{Master: m, Err: err})
			if opts.Failed != nil {
				opts.Failed(m, err)
			}
			continue
		}
		if err := cfg.bindNames(ring); err != nil {
			// Another master key would open the same ring: no use trying.
			return nil, MasterEntry{}, err
		}
		log.Info().Stringer("volume", cfg.VolumeID).Uint64("generation", ring.Generation()).
			Msg("volume unlocked")
		return ring, m, nil
	}
	return nil, MasterEntry{}, uerr
}

// candidates returns the masters Unlock tries.
func (c *Config) candidates(only, kind, skip string) ([]MasterEntry, error) {
	if only == "" && (kind != "" || skip != "") {
		var out []MasterEntry
		for _, m := range c.Masters {
			if (kind == "" || m.Kind == kind) && m.Kind != skip {
				out = append(out, m)
			}
		}
		switch {
		case len(out) > 0:
			return out, nil
		case kind != "":
			return nil, fmt.Errorf("failed to unlock volume: it has no %s master key", kind)
		default:
			return nil, fmt.Errorf("%w: failed to unlock volume: it has only %s master keys",
				ErrNoCandidate, skip)
		}
	}
	if only == "" {
		return c.Masters, nil
	}
	if m, ok := c.Master(only); ok {
		return []MasterEntry{m}, nil
	}
	ids := make([]string, len(c.Masters))
	for i, m := range c.Masters {
		ids[i] = m.ID
	}
	return nil, fmt.Errorf("failed to unlock volume: no master key with ID %q (have %s)",
		only, strings.Join(ids, ", "))
}

// unlockWith opens master m, unseals its ring copy and checks that the ring
// belongs to this volume and generation.
func (c *Config) unlockWith(ctx context.Context, m MasterEntry, open OpenFunc) (*Ring, error) {
	master, err := open(m)
	if err != nil {
		return nil, err
	}
	if w, ok := master.(wiper); ok {
		defer w.Wipe()
	}

	ring, err := UnsealRing(ctx, c.Ring.Sealed[m.ID], c.VolumeID, m.ID, master)
	if err != nil {
		return nil, err
	}
	return c.current(ring)
}

// bindNames checks the config's names mode against the one sealed with the
// ring. volume.json is not authenticated, the sealed ring is: a mismatch
// means the config was edited, and trusting it could turn name encryption
// off (or make every file look missing). A ring sealed before the mode was
// part of the payload takes the config's mode, so that the next sealing
// (master add, rotation) binds it.
func (c *Config) bindNames(ring *Ring) error {
	want := NamesPlaintext
	if c.EncryptedNames() {
		want = NamesEncrypted
	}
	switch ring.names {
	case "":
		ring.names = want
	case want:
	default:
		return fmt.Errorf("volume.json says names are %s but the sealed ring says %s: %w; "+
			"restore it from a backup", want, ring.names, ErrConfigAltered)
	}
	return nil
}

// current returns the config's ring given ring, the ring a master key's
// sealed copy held: ring itself, or, for the older copy of a master key
// that a rotation skipped, the ring it rolls forward to.
func (c *Config) current(ring *Ring) (*Ring, error) {
	if ring.Generation() < c.Ring.Generation {
		return ring.rollForward(c)
	}
	if ring.Generation() != c.Ring.Generation {
		return nil, fmt.Errorf("%w: sealed ring has generation %d, config says %d",
			ErrMalformed, ring.Generation(), c.Ring.Generation)
	}
	return ring, nil
}
