//go:build unix

// Package rewrap re-wraps the key slots of a coffer volume's file headers
// and directory records with the key ring's primary key, in place, while
// the volume may be mounted. It is the scanning half of a ring rotation
// (coffer rotate); the ring changes themselves are package keys'.
//
// Only the key slot that does not hold the working key is written, with a
// generation above both (content.Header.NextSlotAfter); then the slot that
// held the working key under an old ring key is wiped (zeroed, an empty
// slot), so that an old copy of the ring (an old volume.json and a master
// key removed since) no longer unwraps the header after one rotation. A
// crash at any moment leaves a header with a working slot: the old one
// until the new one is written, the new one after. Slots are written
// through a shared memory mapping of the header, never with write(2), so
// that a rewrap racing a truncation by a mount cannot extend or revive the
// file: a mapping past the end of a file faults instead of writing.
// Content blocks are never touched.
package rewrap

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"runtime/debug"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
	"github.com/cofferfs/coffer/fs/names"
)

// errChanged reports a header that a mount rewrote or truncated while it was
// being re-wrapped. It is left for the next pass.
var errChanged = errors.New("header changed during re-wrap")

// Keys wraps and unwraps slot secrets; the volume's key ring implements it.
type Keys interface {
	Wrap(secret []byte, ad func(keyID uint32) []byte) (keyID uint32, wrapped []byte, err error)
	Unwrap(keyID uint32, wrapped, associatedData []byte) ([]byte, error)
}

// Options tune Run.
type Options struct {
	// VolumeID is bound into every slot.
	VolumeID [16]byte
	// Keys unwraps the slots and wraps with the primary key.
	Keys Keys
	// Target, when not 0, is the primary ring key: every header or record
	// whose working slot uses another key is re-wrapped with it. With 0,
	// Run only counts.
	Target uint32
	// SyncEvery is how many slot writes may wait for one syncfs(2); every
	// write is durable when Run returns. 0 means 8192.
	SyncEvery int
	// Progress, if set, is called after each header or record.
	Progress func(done int)
	// AfterWrite, if set, is called after each slot write and each slot
	// wipe (a test hook).
	AfterWrite func()
	// Logger receives Warn events for files that fail.
	Logger zerolog.Logger
}

// Failure is a header or record that could not be checked or re-wrapped.
type Failure struct {
	Path string // backing path
	Err  error
}

// Result is what a scan found and did.
type Result struct {
	// Headers counts the file headers and directory records seen.
	Headers int
	// Rewrapped counts the slots written.
	Rewrapped int
	// Wiped counts the slots wiped: slots under a key other than Target
	// left beside a working slot on Target.
	Wiped int
	// ByKey counts headers and records by the ring key of their working
	// slot, after any re-wrap.
	ByKey map[uint32]int
	// Slots counts every non-empty slot (working or not) by its ring key,
	// after any re-wrap and wipe, for the headers and records that parse.
	// A key may be purged only when no slot names it.
	Slots map[uint32]int
	// Failed lists headers and records with no working slot, or whose
	// re-wrap failed. Run never purges anything; callers must not purge a
	// key while Failed is not empty.
	Failed []Failure
}

// Count returns the number of regular files under backing outside the
// .coffer folder, an upper bound of what Run visits, for progress display.
func Count(backing string) (int, error) {
	n := 0
	err := walk(backing, func(string, string) { n++ })
	return n, err
}

// Run scans every regular file under backing (outside .coffer) that starts
// with a file header or directory record magic, checks that a slot
// unwraps, and re-wraps it with opts.Target where needed. A file that
// vanishes during the scan is skipped.
func Run(ctx context.Context, backing string, opts Options) (*Result, error) {
	if opts.SyncEvery <= 0 {
		opts.SyncEvery = 8192
	}
	root, err := unix.Open(backing, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to open backing directory: %w", err)
	}
	defer unix.Close(root)

	res := &Result{ByKey: map[uint32]int{}, Slots: map[uint32]int{}}
	pending, done := 0, 0
	var cerr error
	werr := walk(backing, func(path, full string) {
		if cerr != nil {
			return
		}
		if cerr = ctx.Err(); cerr != nil {
			return
		}
		wrote, err := one(path, opts, res)
		if err != nil && !errors.Is(err, iofs.ErrNotExist) && !errors.Is(err, errChanged) {
			res.Failed = append(res.Failed, Failure{Path: full, Err: err})
			opts.Logger.Warn().Str("backing", full).Err(err).Msg("failed to re-wrap key slot")
		}
		if wrote {
			pending++
			if pending >= opts.SyncEvery {
				if cerr = unix.Syncfs(root); cerr != nil {
					cerr = fmt.Errorf("failed to sync backing file system: %w", cerr)
				}
				pending = 0
			}
		}
		done++
		if opts.Progress != nil {
			opts.Progress(done)
		}
	})
	if err := unix.Syncfs(root); err != nil && cerr == nil {
		cerr = fmt.Errorf("failed to sync backing file system: %w", err)
	}
	if cerr != nil {
		return res, cerr
	}
	if werr != nil {
		return res, fmt.Errorf("failed to scan backing directory: %w", werr)
	}
	return res, nil
}

// kind says how to bind a slot: a file header or a directory record.
type kind struct {
	magic string
	ad    func(vol [16]byte, id [16]byte, keyID uint32, gen uint64) []byte
}

var kinds = []kind{
	{magic: "coffer", ad: func(v [16]byte, id [16]byte, k uint32, g uint64) []byte {
		return content.SlotAD(v, content.FileID(id), k, g)
	}},
	{magic: "cofdir", ad: func(v [16]byte, id [16]byte, k uint32, g uint64) []byte {
		return names.RecordAD(v, names.DirID(id), k, g)
	}},
}

// one checks and, if needed, re-wraps the header of the file at path. It
// reports whether it wrote a slot.
func one(path string, opts Options, res *Result) (wrote bool, err error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size < content.HeaderSize {
		return false, nil // empty, or not a file with a header
	}

	// Shared mounts start a file over (a new header) only under a lock
	// that covers the header: with it held, the header cannot change
	// between the check and the slot write below.
	if err := lockHeader(fd); err != nil {
		return false, fmt.Errorf("failed to lock header: %w", err)
	}

	m, err := unix.Mmap(fd, 0, content.HeaderSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return false, fmt.Errorf("failed to map header: %w", err)
	}
	defer unix.Munmap(m)

	// A mount may truncate the file under us: touching the mapping past
	// the new end faults, which becomes an error here, not a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			wrote, err = false, fmt.Errorf("%w: %v", errChanged, r)
		}
	}()
	return rewrapMapped(m, opts, res)
}

// rewrapMapped works on the mapped header m: it re-wraps the working slot
// with opts.Target into the other slot, then wipes the old slot; or, when
// the working slot is already on opts.Target, wipes the other slot if it
// is under another key (left by an interrupted run).
func rewrapMapped(m []byte, opts Options, res *Result) (wrote bool, err error) {
	orig := append([]byte(nil), m...)
	k, h, err := parse(orig)
	if err != nil || k == nil {
		return false, err
	}
	res.Headers++
	defer func() { countSlots(m, orig, h, res, err) }()

	used, secret, err := unwrapAny(h, k, opts)
	if err != nil {
		res.ByKey[h.Slots[h.Order()[0]].KeyID]++
		return false, err
	}
	defer clear(secret)
	if opts.Target == 0 {
		res.ByKey[h.Slots[used].KeyID]++
		return false, nil
	}
	if used == h.Order()[0] && h.Slots[used].KeyID == opts.Target {
		res.ByKey[opts.Target]++
		return wipeStale(m, orig, h, 1-used, opts, res)
	}

	idx, slot, err := wrapInto(h, k, used, secret, opts)
	if err != nil {
		res.ByKey[h.Slots[used].KeyID]++
		return false, err
	}
	if string(m) != string(orig) { // a mount rewrote the header meanwhile
		res.ByKey[h.Slots[used].KeyID]++
		return false, errChanged
	}
	copy(m[slotOffset(idx):slotOffset(idx)+slotSize], slot)
	h.Slots[idx] = content.Slot{KeyID: opts.Target, Generation: h.Slots[idx].Generation}
	res.ByKey[opts.Target]++
	res.Rewrapped++
	afterWrite(opts)
	orig = append(orig[:0], m...)
	_, err = wipeStale(m, orig, h, used, opts, res)
	return true, err
}

// wrapInto wraps secret with the primary key for the slot after used and
// returns that slot's index and its 128 bytes.
func wrapInto(h *content.Header, k *kind, used int, secret []byte, opts Options) (int, []byte,
	error) {
	idx, gen := h.NextSlotAfter(used)
	keyID, wrapped, err := opts.Keys.Wrap(secret, func(keyID uint32) []byte {
		return k.ad(opts.VolumeID, h.FileID, keyID, gen)
	})
	if err != nil {
		return 0, nil, err
	}
	if keyID != opts.Target {
		return 0, nil, fmt.Errorf("the ring's primary key is %d, not %d: the ring changed "+
			"during the rotation", keyID, opts.Target)
	}
	n := *h
	n.Slots[idx] = content.Slot{KeyID: keyID, Generation: gen, Wrapped: wrapped}
	b, err := n.MarshalBinary()
	if err != nil {
		return 0, nil, err
	}
	h.Slots[idx].Generation = gen
	return idx, b[slotOffset(idx) : slotOffset(idx)+slotSize], nil
}

// wipeStale zeroes slot i of the mapped header m if it holds a key other
// than opts.Target. The working slot (on opts.Target) is the other one.
func wipeStale(m, orig []byte, h *content.Header, i int, opts Options, res *Result) (bool,
	error) {
	if h.Slots[i].Empty() || h.Slots[i].KeyID == opts.Target {
		return false, nil
	}
	if string(m) != string(orig) {
		return false, errChanged
	}
	clear(m[slotOffset(i) : slotOffset(i)+slotSize])
	h.Slots[i] = content.Slot{}
	res.Wiped++
	afterWrite(opts)
	return true, nil
}

// countSlots adds the non-empty slots of the mapped header to res.Slots:
// those of h when the pass left the header as h says, else those of the
// header as it is now (a mount rewrote it, or the pass failed).
func countSlots(m, orig []byte, h *content.Header, res *Result, err error) {
	if err != nil || string(m) != string(orig) {
		if _, now, perr := parse(append([]byte(nil), m...)); perr == nil && now != nil {
			h = now
		}
	}
	for _, s := range h.Slots {
		if !s.Empty() {
			res.Slots[s.KeyID]++
		}
	}
}

func afterWrite(opts Options) {
	if opts.AfterWrite != nil {
		opts.AfterWrite()
	}
}

// Byte offsets of the key slots in a header (docs/format.md).
const (
	firstSlot = 24
	slotSize  = 128
)

func slotOffset(i int) int { return firstSlot + i*slotSize }

// parse recognises a file header or directory record.
func parse(b []byte) (*kind, *content.Header, error) {
	for i := range kinds {
		k := &kinds[i]
		if string(b[:len(k.magic)]) != k.magic {
			continue
		}
		c := append([]byte(nil), b...)
		copy(c, "coffer")
		h, err := content.ParseHeader(c)
		if err != nil {
			return nil, nil, err
		}
		return k, h, nil
	}
	return nil, nil, nil
}

// unwrapAny unwraps the working slot: the current one, else the other.
func unwrapAny(h *content.Header, k *kind, opts Options) (int, []byte, error) {
	var errs []error
	for _, i := range h.Order() {
		s := h.Slots[i]
		secret, err := opts.Keys.Unwrap(s.KeyID, s.Wrapped,
			k.ad(opts.VolumeID, h.FileID, s.KeyID, s.Generation))
		if err == nil {
			return i, secret, nil
		}
		errs = append(errs, fmt.Errorf("slot %d: %w", i, err))
	}
	return 0, nil, fmt.Errorf("no key slot unwraps: %w", errors.Join(errs...))
}
