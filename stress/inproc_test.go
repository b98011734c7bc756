//go:build linux

package stress

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	cofferfs "github.com/cofferfs/coffer/fs"
	"github.com/cofferfs/coffer/fs/content"
	"github.com/cofferfs/coffer/fs/names"
	"github.com/cofferfs/coffer/keys"
)

// ring is a key ring for in-process mounts whose keys a test can purge:
// a purged key no longer unwraps, as after a rotation removed it.
type ring struct {
	*keys.Ring
	mu     sync.Mutex
	purged map[uint32]bool
}

var _ cofferfs.KeyWrapper = (*ring)(nil)

func newTestRing(t testing.TB) *ring {
	t.Helper()
	r, err := keys.NewRing()
	require.NoError(t, err)
	return &ring{Ring: r, purged: map[uint32]bool{}}
}

// Unwrap refuses purged keys.
func (r *ring) Unwrap(keyID uint32, wrapped, ad []byte) ([]byte, error) {
	r.mu.Lock()
	purged := r.purged[keyID]
	r.mu.Unlock()
	if purged {
		return nil, errors.New("ring key purged")
	}
	return r.Ring.Unwrap(keyID, wrapped, ad)
}

// rotate adds a key and makes it the primary; it returns the new key's ID.
func (r *ring) rotate(t testing.TB) uint32 {
	t.Helper()
	k, err := r.AddKey()
	require.NoError(t, err)
	require.NoError(t, r.SetPrimary(k.ID))
	return k.ID
}

// unpurgeAll makes every key unwrap again.
func (r *ring) unpurgeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.purged)
}

// purge makes key id fail to unwrap, as if a rotation had removed it.
func (r *ring) purge(id uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purged[id] = true
}

// inproc is a volume mounted in this process with package fs, for tests
// that need the key ring in hand.
type inproc struct {
	backing string
	mnt     string
	vol     [16]byte
	keys    *ring
	log     *syncBuffer
	srv     *fuse.Server
}

// newInproc creates a backing directory and mounts it.
func newInproc(t *testing.T) *inproc {
	t.Helper()
	requireRoot(t)
	m := &inproc{backing: t.TempDir(), mnt: t.TempDir(), keys: newTestRing(t), log: &syncBuffer{}}
	_, _ = rand.Read(m.vol[:])
	require.NoError(t, os.Mkdir(filepath.Join(m.backing, cofferfs.ReservedName), 0o700))
	m.mount(t)
	t.Cleanup(func() {
		if m.srv != nil {
			m.unmount(t)
		}
		if t.Failed() {
			t.Logf("last lines of the mount's log:\n%s", m.log.Tail(20))
		}
	})
	return m
}

func (m *inproc) mount(t testing.TB) {
	t.Helper()
	registerMount(m.mnt)
	srv, err := cofferfs.Mount(m.backing, m.mnt, cofferfs.Options{
		VolumeID:     m.vol,
		Keys:         m.keys,
		EncryptNames: true,
		Logger:       zerolog.New(lineWriter{m.log}).Level(zerolog.InfoLevel),
	})
	require.NoError(t, err)
	m.srv = srv
}

func (m *inproc) unmount(t testing.TB) {
	t.Helper()
	if err := m.srv.Unmount(); err != nil {
		t.Errorf("failed to unmount %s: %v", m.mnt, err)
		_ = m.srv.Unmount()
	}
	m.srv.Wait()
	m.srv = nil
}

func (m *inproc) path(name string) string { return filepath.Join(m.mnt, name) }

// backingPath returns the backing file of name, whose name is encrypted.
func (m *inproc) backingPath(name string) string {
	r, err := cofferfs.NewResolver(m.backing, cofferfs.Options{VolumeID: m.vol, Keys: m.keys,
		EncryptNames: true})
	if err == nil {
		name, err = r.Encrypt(name)
	}
	if err != nil {
		panic(fmt.Sprintf("failed to map %s to its backing path: %v", name, err))
	}
	return filepath.Join(m.backing, name)
}

// warned reports whether the log has a warning naming the backing file of
// name.
func (m *inproc) warned(name string) bool {
	for _, line := range m.log.Lines() {
		if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, m.backingPath(name)+`"`) {
			return true
		}
	}
	return false
}

// rewrap re-wraps the data key of a backing file with the ring's primary
// key into the next slot, as a ring rotation does, and returns the new
// header.
func (m *inproc) rewrap(t testing.TB, name string) []byte {
	t.Helper()
	p := m.backingPath(name)
	b := readFile(t, p)
	h, err := content.ParseHeader(b[:content.HeaderSize])
	require.NoError(t, err)
	cur := h.Slots[h.Order()[0]]
	dek, err := m.keys.Unwrap(cur.KeyID, cur.Wrapped, content.SlotAD(m.vol, h.FileID, cur.KeyID, cur.Generation))
	require.NoError(t, err)

	idx, gen := h.NextSlot()
	id, wrapped, err := m.keys.Wrap(dek, func(id uint32) []byte { return content.SlotAD(m.vol, h.FileID, id, gen) })
	require.NoError(t, err)
	h.Slots[idx] = content.Slot{KeyID: id, Generation: gen, Wrapped: wrapped}
	hdr, err := h.MarshalBinary()
	require.NoError(t, err)
	writeAtPath(t, p, hdr, 0)
	return hdr
}

// rewrapRecord re-wraps the name secret in the record of the backing
// directory dir with the ring's primary key into the next slot, as a ring
// rotation does: nothing is renamed.
func (m *inproc) rewrapRecord(t testing.TB, dir string) {
	t.Helper()
	p := filepath.Join(dir, names.RecordName)
	r, err := names.ParseRecord(readFile(t, p))
	require.NoError(t, err)
	cur := r.Slots[r.Order()[0]]
	secret, err := m.keys.Unwrap(cur.KeyID, cur.Wrapped, names.RecordAD(m.vol, r.ID, cur.KeyID, cur.Generation))
	require.NoError(t, err)

	idx, gen := r.NextSlot()
	id, wrapped, err := m.keys.Wrap(secret, func(id uint32) []byte { return names.RecordAD(m.vol, r.ID, id, gen) })
	require.NoError(t, err)
	r.Slots[idx] = content.Slot{KeyID: id, Generation: gen, Wrapped: wrapped}
	b, err := r.MarshalBinary()
	require.NoError(t, err)
	writeAtPath(t, p, b, 0)
}

// writeAtPath writes b at off into an existing file outside any mount.
func writeAtPath(t testing.TB, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// lineWriter feeds zerolog's lines into a syncBuffer.
type lineWriter struct{ b *syncBuffer }

func (w lineWriter) Write(p []byte) (int, error) {
	w.b.WriteLine(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
