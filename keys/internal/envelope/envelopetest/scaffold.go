package envelopetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/box"
	"github.com/cofferfs/coffer/keys/internal/envelope"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// Vol1 and Vol2 are two volume IDs for tests.
var (
	Vol1 = keys.VolumeID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	Vol2 = keys.VolumeID{16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
)

// KnownAnswer checks a kind that uses envelope.Layout against the vector at
// path: it opens the sealed copy by hand after docs/format.md, then with
// parse, the kind's parser, and envelope.Open given the vector's KEK. A
// change of the layout or of the box's associated data fails it.
func KnownAnswer(t *testing.T, path string, parse func([]byte) (blob, boxed []byte, err error)) {
	k := Load(t, path)
	ad := k.RingAD()
	require.Equal(t, keys.RingAD(keys.VolumeID(k.Volume), k.Master), ad)
	require.Equal(t, byte(1), k.Sealed[0])
	n := int(binary.BigEndian.Uint16(k.Sealed[1:3]))
	assert.Equal(t, k.Plaintext, OpenBox(t, k.KEK, k.Sealed, 3+n, ad))

	blob, boxed, err := parse(k.Sealed)
	require.NoError(t, err)
	assert.Equal(t, k.Sealed[3:3+n], blob)
	got, err := envelope.Open(context.Background(), keys.SecretFromBytes(bytes.Clone(k.KEK)),
		k.Sealed, boxed, ad)
	require.NoError(t, err)
	assert.Equal(t, k.Plaintext, got)
}

// Edit is a named change to a sealed copy; it may change b in place.
type Edit struct {
	Name string
	Edit func(b []byte) []byte
}

// Tampered checks that m refuses each edit of sealed, whose box starts at
// sealed[boxStart:], with keys.ErrWrongKey in one line, and a copy of
// another layout version with keys.ErrUnsupportedVersion. It makes the
// edits of the box, the length and the end of the copy that every layout
// shares; header lists the kind's own edits of its header.
func Tampered(t *testing.T, m keys.Master, sealed, ad []byte, boxStart int, header ...Edit) {
	edits := append(slices.Clip(header),
		Edit{"box nonce", func(b []byte) []byte { b[boxStart] ^= 1; return b }},
		Edit{"box ciphertext", func(b []byte) []byte { b[boxStart+24] ^= 1; return b }},
		Edit{"tag", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		Edit{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		Edit{"empty", func([]byte) []byte { return nil }},
		Edit{"appended byte", func(b []byte) []byte { return append(b, 0) }},
	)
	for _, e := range edits {
		t.Run(e.Name, func(t *testing.T) {
			_, err := m.Unseal(context.Background(), e.Edit(bytes.Clone(sealed)), ad)
			assert.ErrorIs(t, err, keys.ErrWrongKey)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
	t.Run("layout version", func(t *testing.T) {
		bad := bytes.Clone(sealed)
		bad[0] = 2
		_, err := m.Unseal(context.Background(), bad, ad)
		assert.ErrorIs(t, err, keys.ErrUnsupportedVersion)
	})
}

// HangingServer listens on a loopback port, accepts connections and never
// answers them, for tests of the call timeout. It returns the address,
// 127.0.0.1:PORT; the listener and the connections close when the test
// ends.
func HangingServer(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		var conns []net.Conn // held open, unanswered, until the test ends
		defer func() {
			for _, c := range conns {
				c.Close()
			}
			close(done)
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

// SealToHangingServer starts a HangingServer, has open make a master whose
// endpoint is its URL (scheme://127.0.0.1:PORT) and returns the error of a
// seal with it. It fails the test if the seal has not given up within a
// minute; the caller shortens its call timeout first.
func SealToHangingServer(t *testing.T, scheme string,
	open func(endpoint string) (keys.Master, error)) error {
	m, err := open(scheme + "://" + HangingServer(t))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := m.Seal(context.Background(), []byte("ring"), keys.RingAD(Vol1, "m1"))
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("Seal did not give up on a server that never answers")
		return nil
	}
}

// StoppedServer seals a ring with m, calls stop to take the key service
// away and returns the error of unsealing the copy, which must come within
// timeout, the kind's call timeout: a refused connection is not retried for
// long.
func StoppedServer(t *testing.T, m keys.Master, stop func(), timeout time.Duration) error {
	ad := keys.RingAD(Vol1, "m1")
	sealed, err := m.Seal(context.Background(), []byte("ring"), ad)
	require.NoError(t, err)
	stop()

	start := time.Now()
	_, err = m.Unseal(context.Background(), sealed, ad)
	require.Error(t, err)
	assert.Less(t, time.Since(start), timeout)
	return err
}

// WrongBinding seals a ring with m and checks that it does not open for
// another volume or master ID, nor with other, a master of another key:
// each fails with keys.ErrWrongKey, and check (when not nil) looks further
// at the error.
func WrongBinding(t *testing.T, m, other keys.Master, check func(t *testing.T, err error)) {
	sealed, err := m.Seal(context.Background(), []byte("ring"), keys.RingAD(Vol1, "m1"))
	require.NoError(t, err)

	tests := []struct {
		name string
		m    keys.Master
		ad   []byte
	}{
		{"other volume", m, keys.RingAD(Vol2, "m1")},
		{"other master ID", m, keys.RingAD(Vol1, "m2")},
		{"other key", other, keys.RingAD(Vol1, "m1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.m.Unseal(context.Background(), sealed, tt.ad)
			assert.ErrorIs(t, err, keys.ErrWrongKey)
			if check != nil {
				check(t, err)
			}
		})
	}
}

// InitUnlock runs a whole volume through the master key at uri as the CLI
// does: masterkey.Enroll, keys.Init sealing the ring, keys.Unlock opening it
// again through masterkey.Opener. The enrollment must be of kind.
func InitUnlock(t *testing.T, kind, uri string, opts masterkey.Options) {
	e, err := masterkey.Enroll(context.Background(), uri, opts)
	require.NoError(t, err)
	assert.Equal(t, kind, e.Kind)

	cfg, ring, err := keys.Init(context.Background(), t.TempDir(), []keys.Enrollment{e},
		keys.InitOptions{})
	require.NoError(t, err)
	got, entry, err := keys.Unlock(context.Background(), cfg, masterkey.Opener(
		context.Background(), opts), keys.UnlockOptions{})
	require.NoError(t, err)
	assert.Equal(t, cfg.Masters[0].ID, entry.ID)
	assert.Equal(t, ring.Generation(), got.Generation())
}

// FuzzLayout fuzzes parse, the parser of a kind that uses envelope.Layout
// with blobs of at most maxBlob bytes, seeded with a valid copy holding
// blob and with malformed ones. What parse accepts must be in bounds, pass
// valid (when not nil) and rebuild the input exactly.
func FuzzLayout(f *testing.F, blob []byte, maxBlob int,
	parse func([]byte) (blob, boxed []byte, err error), valid func(blob []byte) bool) {
	seed := append([]byte{envelope.Version, 0, byte(len(blob))}, blob...)
	f.Add(append(seed, make([]byte, box.Overhead)...))
	f.Add([]byte{envelope.Version, 0xff, 0xff})
	f.Add([]byte{envelope.Version, 0, 0})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, sealed []byte) {
		blob, boxed, err := parse(sealed)
		if err != nil {
			return
		}
		if len(blob) == 0 || len(blob) > maxBlob || len(boxed) < box.Overhead ||
			(valid != nil && !valid(blob)) {
			t.Fatalf("accepted blob of %d bytes, box of %d", len(blob), len(boxed))
		}
		joined := append(append(bytes.Clone(sealed[:envelope.HeaderSize]), blob...), boxed...)
		if !bytes.Equal(joined, sealed) {
			t.Fatal("parts do not rebuild the input")
		}
	})
}
