package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Follower is the key wrapper of a running mount: it wraps and unwraps with
// ring and keeps ring current with the volume config, which a rotation
// (from another process, possibly on another host sharing the backing
// directory) replaces. Before every Wrap it checks whether the config file
// changed, and on an Unwrap with a key it does not know it reloads at once;
// a newer ring is opened from the config's carried copy under a key the
// mount holds, so no master key is needed, and installed into ring in place.
//
// Wrap refuses to wrap with a key that the config no longer lists as the
// primary when the newer ring cannot be opened, so a mount never creates a
// file under a key that a rotation retired or purged.
type Follower struct {
	ring    *Ring
	backing string
	log     zerolog.Logger

	mu      sync.Mutex
	seen    stamp // of the config file that ring matches
	ack     Ack
	ackName string // set by Watch
	// mountPoint is recorded in the acknowledgement (SetMountPoint).
	mountPoint string
}

// stamp identifies one version of the config file: every config write is
// a rename of a new file. Timestamps are coarse (a few milliseconds), so
// the file's identity counts too, and the watch reads the config anyway.
type stamp struct {
	fi   os.FileInfo
	mod  time.Time
	size int64
}

func (s stamp) same(o stamp) bool {
	return s.fi != nil && o.fi != nil && os.SameFile(s.fi, o.fi) && s.mod.Equal(o.mod) &&
		s.size == o.size
}

// NewFollower returns a Follower of ring, the ring of the volume in
// backing as unlocked.
func NewFollower(backing string, ring *Ring, log zerolog.Logger) *Follower {
	f := &Follower{ring: ring, backing: backing, log: log}
	f.seen, _ = f.stat()
	return f
}

func (f *Follower) stat() (stamp, error) {
	fi, err := os.Stat(ConfigPath(f.backing))
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi: fi, mod: fi.ModTime(), size: fi.Size()}, nil
}

// Ring returns the followed ring.
func (f *Follower) Ring() *Ring { return f.ring }

// Wrap wraps dek with the primary key of the current ring (see Ring.Wrap).
func (f *Follower) Wrap(dek []byte, ad func(keyID uint32) []byte) (uint32, []byte, error) {
	if err := f.Refresh(false); err != nil {
		return 0, nil, err
	}
	return f.ring.Wrap(dek, ad)
}

// Unwrap unwraps with the ring, reloading it first when the key is one a
// rotation added after the ring was loaded.
func (f *Follower) Unwrap(keyID uint32, wrapped, associatedData []byte) ([]byte, error) {
	dek, err := f.ring.Unwrap(keyID, wrapped, associatedData)
	if !errors.Is(err, ErrUnknownKey) {
		return dek, err
	}
	if rerr := f.Refresh(true); rerr != nil {
		f.log.Warn().Err(rerr).Msg("failed to reload the key ring")
	}
	return f.ring.Unwrap(keyID, wrapped, associatedData)
}

// Refresh loads the config's ring if the config file changed since the last
// look, or always with force. It returns an error only when the ring's
// primary key may no longer be used to wrap.
func (f *Follower) Refresh(force bool) error {
	st, err := f.stat()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && st.same(f.seen) && !force {
		return nil
	}
	cfg, cerr := ReadConfig(f.backing)
	if cerr != nil {
		// The config we follow is unreadable: keep the ring, unless we
		// saw it change, in which case say so once per look.
		f.log.Warn().Err(cerr).Msg("failed to read the volume config to follow ring changes")
		return nil
	}
	if cfg.Ring.Generation <= f.ring.Generation() {
		f.seen = st
		return nil
	}
	next, rerr := f.ring.rollForward(cfg)
	if rerr == nil {
		if f.ring.adopt(next) {
			f.log.Info().Uint64("generation", next.Generation()).Uint32("primary",
				next.Primary().ID).Msg("key ring reloaded")
			f.writeAck()
		}
		f.seen = st
		return nil
	}
	f.log.Error().Err(rerr).Msg("failed to roll the key ring forward; remount the volume")
	return stillPrimary(cfg, f.ring.Primary().ID, rerr)
}

// stillPrimary returns nil when cfg still lists key id as its primary, or
// else an error saying that the mount must not wrap with it.
func stillPrimary(cfg *Config, id uint32, cause error) error {
	if slices.ContainsFunc(cfg.Ring.Keys, func(k KeyInfo) bool {
		return k.ID == id && k.State == StatePrimary
	}) {
		return nil
	}
	return fmt.Errorf("failed to wrap data key: ring key %d is no longer the volume's primary "+
		"and the new ring cannot be loaded (%w); remount the volume", id, cause)
}

// MountsName is the folder in DirName where each running mount records the
// ring generation it uses (an acknowledgement), so that a rotation purges
// old keys only after every mount has moved past them.
const MountsName = "mounts"

// Ack is one running mount's acknowledgement.
type Ack struct {
	Version    int       `json:"version"`
	Host       string    `json:"host"`
	PID        int       `json:"pid"`
	Generation uint64    `json:"generation"`
	Updated    time.Time `json:"updated"`
	// MountPoint is where the mount serves the volume (absolute, symbolic
	// links resolved), so that status can tell which process serves which
	// mount point without touching the mount. Empty in records written
	// before it was added.
	MountPoint string `json:"mount_point,omitempty"`
	// BootID and StartTime identify the process across PID reuse (after a
	// reboot, say): the kernel's boot ID and the process's start time, as
	// ProcessStart returns them. Empty in records written before they were
	// added, or where /proc does not tell.
	BootID    string `json:"boot_id,omitempty"`
	StartTime uint64 `json:"start_time,omitempty"`

	Name string `json:"-"` // file name in MountsName
}

// SetMountPoint records dir as the mount point in the acknowledgement that
// Watch writes. Call it before Watch.
func (f *Follower) SetMountPoint(dir string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mountPoint = dir
}

// Watch makes f check the config every interval until the returned stop
// function is called, so that an idle mount follows a rotation too, and
// records the generation it uses in MountsName; stop removes the record.
func (f *Follower) Watch(interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	host, _ := os.Hostname()
	f.mu.Lock()
	f.ack = Ack{Version: 1, Host: host, PID: os.Getpid(), MountPoint: f.mountPoint}
	if boot, start, ok := ProcessStart(os.Getpid()); ok {
		f.ack.BootID, f.ack.StartTime = boot, start
	}
	f.ackName = fmt.Sprintf("%s-%d.json", sanitize(host), os.Getpid())
	f.writeAck()
	f.mu.Unlock()
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				if mountsDirSafe(f.backing) == nil {
					_ = os.Remove(filepath.Join(f.backing, DirName, MountsName, f.ackName))
				}
				return
			case <-t.C:
				_ = f.Refresh(true)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// writeAck records the ring generation in use, if Watch enabled it. The
// caller holds f.mu or is Watch before the loop starts.
func (f *Follower) writeAck() {
	if f.ackName == "" {
		return
	}
	a := f.ack
	a.Generation = f.ring.Generation()
	a.Updated = now()
	b, err := json.Marshal(a)
	if err == nil {
		err = mountsDirSafe(f.backing)
	}
	if err == nil {
		dir := filepath.Join(f.backing, DirName, MountsName)
		if err = os.MkdirAll(dir, 0o700); err == nil {
			err = writeFileAtomic(dir, f.ackName, append(b, '\n'))
		}
	}
	if err != nil {
		f.log.Warn().Err(err).Msg("failed to record the ring generation this mount uses")
	}
}

// mountsDirSafe checks, just before a mount writes or removes its record,
// that neither .coffer nor .coffer/mounts has become a symbolic link since
// the mount started (which checked them too): a mount runs as root for
// hours, and the record must not land where such a link points.
func mountsDirSafe(backing string) error {
	if fi, err := os.Lstat(filepath.Join(backing, DirName)); err == nil && !fi.IsDir() {
		return &ReservedError{Path: filepath.Join(backing, DirName), Is: FileKind(fi.Mode()),
			Want: "a directory"}
	}
	if err := checkReservedEntry(filepath.Join(backing, DirName, MountsName), true); err != nil {
		return err
	}
	return nil
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "host"
	}
	return string(b)
}

// MountAcks returns the acknowledgements of the mounts of backing.
// Unreadable ones are skipped.
func MountAcks(backing string) ([]Ack, error) {
	if err := mountsDirSafe(backing); err != nil {
		return nil, fmt.Errorf("failed to list mounts: %w", err)
	}
	dir := filepath.Join(backing, DirName, MountsName)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to list mounts: %w", err)
	}
	var out []Ack
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") ||
			!e.Type().IsRegular() {
			continue // a link or other planted entry is no record (fsck names it)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || len(b) > 4096 {
			continue
		}
		var a Ack
		if json.Unmarshal(b, &a) != nil {
			continue
		}
		a.Name = e.Name()
		out = append(out, a)
	}
	return out, nil
}

// RemoveAck removes the acknowledgement file name of a mount that is gone.
func RemoveAck(backing, name string) error {
	if err := mountsDirSafe(backing); err != nil {
		return err
	}
	return os.Remove(filepath.Join(backing, DirName, MountsName, filepath.Base(name)))
}
