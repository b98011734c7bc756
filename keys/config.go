package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// Config format constants.
const (
	// ConfigVersion is the newest volume config version this build reads and
	// the one it writes.
	ConfigVersion = 1
	// FileFormat is the newest file format (fs/content) this build reads. It
	// must equal content.Version; keys does not import fs to check it.
	FileFormat = 1
	// DirName is the reserved folder at the root of a backing directory.
	DirName = ".coffer"
	// ConfigName is the volume config file inside DirName.
	ConfigName = "volume.json"
)

// MaxMasters is the most master keys a volume holds: Init and AddMaster
// refuse more, and a config listing more is malformed.
const MaxMasters = 32

// Bounds on config contents, so that a hostile config cannot exhaust memory
// or hide a huge value.
const (
	maxConfigSize = 4 << 20
	maxSealedSize = 256 << 10
	maxURILen     = 4096
	maxKindLen    = 32
)

// VolumeID identifies a volume: 16 random bytes, written as 32 lowercase hex
// characters.
type VolumeID [16]byte

// NewVolumeID returns a random volume ID.
func NewVolumeID() (VolumeID, error) {
	var v VolumeID
	if _, err := rand.Read(v[:]); err != nil {
		return v, fmt.Errorf("failed to read random bytes: %w", err)
	}
	return v, nil
}

// String returns the ID as 32 lowercase hex characters.
func (v VolumeID) String() string { return hex.EncodeToString(v[:]) }

// MarshalText returns the ID as 32 lowercase hex characters.
func (v VolumeID) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText accepts exactly 32 lowercase hex characters.
func (v *VolumeID) UnmarshalText(b []byte) error {
	if !isLowerHex(string(b), 2*len(v)) {
		return fmt.Errorf("volume ID must be %d lowercase hex characters", 2*len(v))
	}
	_, err := hex.Decode(v[:], b)
	return err
}

// Config is the volume config, .coffer/volume.json. It is public: it holds
// no secret, only sealed ring copies.
type Config struct {
	Version  int           `json:"version"`
	VolumeID VolumeID      `json:"volume_id"`
	Format   int           `json:"format"`
	Created  time.Time     `json:"created"`
	Masters  []MasterEntry `json:"masters"`
	Ring     RingConfig    `json:"ring"`

	// Names says whether entry names, symbolic link targets and user
	// extended attributes are encrypted: NamesEncrypted or NamesPlaintext,
	// fixed for the volume's life. Configs written before the field
	// existed lack it and mean plaintext names.
	Names string `json:"names,omitempty"`

	// Policy holds the volume's key policy; nil means none.
	Policy *Policy `json:"policy,omitempty"`
}

// Policy is a volume's key policy.
type Policy struct {
	// MaxKeyAgeDays, when not 0, is how many days the primary ring key
	// may be used before coffer status, each mount and coffer rotate
	// --if-due consider a rotation due.
	MaxKeyAgeDays int `json:"max_key_age_days,omitempty"`
}

// MaxPolicyDays bounds Policy.MaxKeyAgeDays (100 years).
const MaxPolicyDays = 36500

// RotationDue reports whether the volume's policy asks for a rotation at
// now: its primary ring key is older than the policy's maximum age.
//
// The creation times in c.Ring.Keys are public metadata that anyone who can
// write the backing directory can edit (a date in the future keeps the
// policy quiet); a command that has the ring open uses KeyDue with the
// sealed ring's Primary().Created instead.
func (c *Config) RotationDue(now time.Time) bool {
	for _, k := range c.Ring.Keys {
		if k.State == StatePrimary {
			return c.KeyDue(k.Created, now)
		}
	}
	return false
}

// KeyDue reports whether the volume's policy asks for a rotation at now of
// a primary ring key created at created. The policy is c's, read from
// volume.json and not authenticated: an edit of the backing directory can
// raise or remove it (see docs/limitations.md).
func (c *Config) KeyDue(created, now time.Time) bool {
	if c.Policy == nil || c.Policy.MaxKeyAgeDays == 0 {
		return false
	}
	return now.Sub(created) > time.Duration(c.Policy.MaxKeyAgeDays)*24*time.Hour
}

// Values of Config.Names.
const (
	NamesEncrypted = "encrypted"
	NamesPlaintext = "plaintext"
)

// EncryptedNames reports whether the volume encrypts names.
func (c *Config) EncryptedNames() bool {
	return c.Names == NamesEncrypted
}

// MasterEntry records one master key enrolled on the volume. Params holds
// kind-specific public parameters, such as an Argon2id salt and cost.
type MasterEntry struct {
	ID     string          `json:"id"`   // 8 lowercase hex characters
	Kind   string          `json:"kind"` // "file", "passphrase", ...
	URI    string          `json:"uri"`  // never holds a secret
	Added  time.Time       `json:"added"`
	Params json.RawMessage `json:"params,omitempty"`
	// Tag authenticates the entry under the ring (see EntryTag). Entries
	// written before tags existed lack it.
	Tag *EntryTag `json:"tag,omitempty"`
}

// RingConfig holds the ring's public metadata and one sealed copy of the
// ring payload per master ID. Keys is informational, for status without
// unlocking; the sealed payload is authoritative.
type RingConfig struct {
	Generation uint64            `json:"generation"`
	Keys       []KeyInfo         `json:"keys"`
	Sealed     map[string][]byte `json:"sealed"`
	// Carry holds the ring sealed under a key derived from each of its own
	// keys, by decimal key ID, so that a holder of an older ring rolls
	// forward without a master key (see carry.go). Absent in configs
	// written before rotation existed.
	Carry map[string][]byte `json:"carry,omitempty"`
}

// ConfigPath returns the path of the volume config in backing.
func ConfigPath(backing string) string {
	return filepath.Join(backing, DirName, ConfigName)
}

// Master returns the master entry with the given ID.
func (c *Config) Master(id string) (MasterEntry, bool) {
	for _, m := range c.Masters {
		if m.ID == id {
			return m, true
		}
	}
	return MasterEntry{}, false
}

// ReadConfig reads and checks the volume config of backing. It returns an
// error wrapping fs.ErrNotExist when backing does not exist,
// ErrNotInitialized when it has no config, ErrUnsupportedVersion when the
// config or file format is newer than this build, and ErrMalformed when the
// config breaks any rule. It returns either a whole valid config or nothing.
func ReadConfig(backing string) (*Config, error) {
	if err := checkBackingDir(backing); err != nil {
		return nil, err
	}
	path := ConfigPath(backing)
	// Not blocking and not following a link: whoever can write the
	// backing directory could swap a named pipe in after a mount checked
	// .coffer at its start, and a blocking open would hang every create
	// of that mount, which reads the config to notice rotations.
	f, err := os.OpenFile(path, os.O_RDONLY|openNoBlock|openNoFollow, 0)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, notInitialized(backing)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to open volume config: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("failed to inspect volume config %s: %w", path, err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: volume config %s is %s, not a regular file: remove it "+
			"and put the config back (coffer restore)", ErrMalformed, path, FileKind(fi.Mode()))
	}

	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read volume config %s: %w", path, err)
	}
	cfg, err := parseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("failed to read volume config %s: %w", path, err)
	}
	return cfg, nil
}

func notInitialized(backing string) error {
	if _, err := os.Lstat(filepath.Join(backing, DirName)); err == nil {
		return fmt.Errorf("%w: %s has a %s folder without %s (left by an interrupted init?)",
			ErrNotInitialized, backing, DirName, ConfigName)
	}
	return fmt.Errorf("%w: %s has no %s", ErrNotInitialized, backing,
		filepath.Join(DirName, ConfigName))
}

// checkBackingDir checks that backing exists and is a directory.
func checkBackingDir(backing string) error {
	fi, err := os.Stat(backing)
	if errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("backing directory %s does not exist: %w", backing, iofs.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("failed to check backing directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("backing path %s is not a directory", backing)
	}
	return nil
}

// parseConfig decodes and validates a config.
func parseConfig(b []byte) (*Config, error) {
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("%w: config is larger than %d bytes", ErrMalformed, maxConfigSize)
	}
	var c Config
	if err := decodeVersioned(b, &c, ConfigVersion, "volume config"); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// decodeVersioned reads the "version" field of the JSON object b first and
// refuses versions other than supported, then decodes b strictly into v:
// unknown fields and trailing data are errors.
func decodeVersioned(b []byte, v any, supported int, what string) error {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return fmt.Errorf("%w: %s is not valid JSON: %v", ErrMalformed, what, err)
	}
	switch {
	case head.Version == nil:
		return fmt.Errorf("%w: %s has no version", ErrMalformed, what)
	case *head.Version > supported:
		return fmt.Errorf("%w: %s version %d is newer than version %d, the newest this "+
			"coffer supports", ErrUnsupportedVersion, what, *head.Version, supported)
	case *head.Version < 1 || *head.Version != supported:
		return fmt.Errorf("%w: %s has invalid version %d", ErrMalformed, what, *head.Version)
	}

	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: failed to decode %s: %v", ErrMalformed, what, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return fmt.Errorf("%w: %s has trailing data", ErrMalformed, what)
	}
	return nil
}

// Validate checks every structural rule of a config: versions, IDs, one
// sealed copy per master and no other, ring metadata.
func (c *Config) Validate() error {
	switch {
	case c.Version > ConfigVersion:
		return fmt.Errorf("%w: volume config version %d is newer than version %d, the newest "+
			"this coffer supports", ErrUnsupportedVersion, c.Version, ConfigVersion)
	case c.Version != ConfigVersion:
		return fmt.Errorf("%w: invalid config version %d", ErrMalformed, c.Version)
	case c.Format > FileFormat:
		return fmt.Errorf("%w: file format %d is newer than format %d, the newest this "+
			"coffer supports", ErrUnsupportedVersion, c.Format, FileFormat)
	case c.Format < 1:
		return fmt.Errorf("%w: invalid file format %d", ErrMalformed, c.Format)
	case c.VolumeID == VolumeID{}:
		return fmt.Errorf("%w: volume ID is missing", ErrMalformed)
	case c.Created.IsZero():
		return fmt.Errorf("%w: creation time is missing", ErrMalformed)
	case c.Names != "" && c.Names != NamesEncrypted && c.Names != NamesPlaintext:
		return fmt.Errorf("%w: names must be %q or %q", ErrMalformed, NamesEncrypted, NamesPlaintext)
	}
	if p := c.Policy; p != nil && (p.MaxKeyAgeDays < 0 || p.MaxKeyAgeDays > MaxPolicyDays) {
		return fmt.Errorf("%w: policy max_key_age_days must be 0 to %d", ErrMalformed,
			MaxPolicyDays)
	}
	if err := validateMasters(c.Masters); err != nil {
		return err
	}
	return c.validateRing()
}

func validateMasters(ms []MasterEntry) error {
	if len(ms) == 0 || len(ms) > MaxMasters {
		return fmt.Errorf("%w: config has %d master keys, want 1 to %d",
			ErrMalformed, len(ms), MaxMasters)
	}
	seen := make(map[string]bool, len(ms))
	for _, m := range ms {
		if err := m.validate(); err != nil {
			return err
		}
		if seen[m.ID] {
			return fmt.Errorf("%w: master key %s is listed twice", ErrMalformed, m.ID)
		}
		seen[m.ID] = true
	}
	return checkCopies(ms)
}

// checkCopies refuses two entries with the same kind, URI and params: one
// key listed twice. master add never writes that, so one is a copy made
// by hand, and a lookup by URI could pick either.
func checkCopies(ms []MasterEntry) error {
	for i, a := range ms {
		for _, b := range ms[:i] {
			if a.Kind == b.Kind && a.URI == b.URI && bytes.Equal(a.Params, b.Params) {
				return fmt.Errorf("%w: master keys %s and %s are one key listed twice (same "+
					"kind, URI and params): remove the entry you did not add from the volume "+
					"config, or restore a backup", ErrMalformed, b.ID, a.ID)
			}
		}
	}
	return nil
}

func (m MasterEntry) validate() error {
	switch {
	case !isLowerHex(m.ID, 8):
		return fmt.Errorf("%w: master key ID %q is not 8 lowercase hex characters",
			ErrMalformed, m.ID)
	case !isKind(m.Kind):
		return fmt.Errorf("%w: master key %s has invalid kind %q", ErrMalformed, m.ID, m.Kind)
	case m.URI == "" || len(m.URI) > maxURILen:
		return fmt.Errorf("%w: master key %s has an empty or overlong URI", ErrMalformed, m.ID)
	case m.Params != nil && !json.Valid(m.Params):
		return fmt.Errorf("%w: master key %s has invalid params", ErrMalformed, m.ID)
	case m.Tag != nil && len(m.Tag.MAC) != tagSize:
		return fmt.Errorf("%w: master key %s has a tag of %d bytes, want %d", ErrMalformed, m.ID,
			len(m.Tag.MAC), tagSize)
	}
	return nil
}

func (c *Config) validateRing() error {
	if c.Ring.Generation == 0 {
		return fmt.Errorf("%w: ring generation is 0", ErrMalformed)
	}
	if err := validateKeyInfos(c.Ring.Keys); err != nil {
		return err
	}
	if len(c.Ring.Sealed) != len(c.Masters) {
		return fmt.Errorf("%w: config has %d sealed ring copies for %d master keys",
			ErrMalformed, len(c.Ring.Sealed), len(c.Masters))
	}
	if err := c.validateCarry(); err != nil {
		return err
	}
	for _, m := range c.Masters {
		s, ok := c.Ring.Sealed[m.ID]
		if !ok || len(s) == 0 || len(s) > maxSealedSize {
			return fmt.Errorf("%w: master key %s has no valid sealed ring copy",
				ErrMalformed, m.ID)
		}
	}
	return nil
}

// validateCarry checks that every carried copy is under a key of the ring.
func (c *Config) validateCarry() error {
	for id, s := range c.Ring.Carry {
		n, err := strconv.ParseUint(id, 10, 32)
		if err != nil || strconv.FormatUint(n, 10) != id ||
			!slices.ContainsFunc(c.Ring.Keys, func(k KeyInfo) bool { return uint64(k.ID) == n }) {
			return fmt.Errorf("%w: carried ring copy under %q, not a ring key", ErrMalformed, id)
		}
		if len(s) == 0 || len(s) > maxSealedSize {
			return fmt.Errorf("%w: carried ring copy under key %s has invalid size", ErrMalformed, id)
		}
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isKind accepts 1 to maxKindLen characters of [a-z0-9-], starting with a
// letter.
func isKind(s string) bool {
	if len(s) == 0 || len(s) > maxKindLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// WriteConfig validates cfg and replaces the config of backing atomically:
// it writes a temporary file in .coffer with mode 0600, fsyncs it, renames
// it over volume.json and fsyncs the folder. Readers see the old config or
// the new one, never a mix. The .coffer folder must exist.
func WriteConfig(backing string, cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("failed to write volume config: %w", err)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode volume config: %w", err)
	}
	b = append(b, '\n')

	dir := filepath.Join(backing, DirName)
	if _, err := os.Stat(dir); errors.Is(err, iofs.ErrNotExist) {
		return notInitialized(backing)
	}
	if err := writeFileAtomic(dir, ConfigName, b); err != nil {
		return fmt.Errorf("failed to write volume config: %w", err)
	}
	return nil
}

// writeFileAtomic writes b to dir/name through a temporary file and rename.
func writeFileAtomic(dir, name string, b []byte) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()

	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir fsyncs a directory so that a rename or create in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to sync %s: %w", dir, err)
	}
	return nil
}
