package fs

import (
	"bufio"
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/chacha20poly1305"
)

func TestMain(m *testing.M) {
	// A test that touches an mmap'd page of the mount blocks its OS thread
	// in the page fault until the server in this same process answers:
	// keep enough Ps for the server to run.
	if runtime.GOMAXPROCS(0) < 4 {
		runtime.GOMAXPROCS(4)
	}
	os.Exit(m.Run())
}

// testWrapper is a KeyWrapper for tests, independent of package keys: one
// XChaCha20-Poly1305 key with ID 7, the ID prefixed to the wrapped key.
type testWrapper struct {
	aead cipher.AEAD
}

func newTestWrapper(t testing.TB) *testWrapper {
	t.Helper()
	key := make([]byte, chacha20poly1305.KeySize)
	_, _ = rand.Read(key)
	aead, err := chacha20poly1305.NewX(key)
	require.NoError(t, err)
	return &testWrapper{aead: aead}
}

const testKeyID = 7

var errTestUnwrap = errors.New("test wrapper: unwrap failed")

func (w *testWrapper) Wrap(dek []byte, ad func(uint32) []byte) (uint32, []byte, error) {
	nonce := make([]byte, w.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := binary.BigEndian.AppendUint32(nil, testKeyID)
	out = append(out, nonce...)
	return testKeyID, w.aead.Seal(out, nonce, dek, ad(testKeyID)), nil
}

func (w *testWrapper) Unwrap(keyID uint32, wrapped, ad []byte) ([]byte, error) {
	ns := w.aead.NonceSize()
	if keyID != testKeyID || len(wrapped) < 4+ns || binary.BigEndian.Uint32(wrapped) != keyID {
		return nil, errTestUnwrap
	}
	dek, err := w.aead.Open(nil, wrapped[4:4+ns], wrapped[4+ns:], ad)
	if err != nil {
		return nil, errTestUnwrap
	}
	return dek, nil
}

// logBuffer collects zerolog JSON lines written from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// entries returns the decoded log lines.
func (b *logBuffer) entries(t testing.TB) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()

	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "log line %q", sc.Text())
		out = append(out, m)
	}
	return out
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testVolume is a backing directory with its options, mountable many times.
type testVolume struct {
	backing string
	opts    Options
	logs    *logBuffer
}

func newTestVolume(t testing.TB) *testVolume {
	t.Helper()
	logs := &logBuffer{}
	v := &testVolume{
		backing: t.TempDir(),
		logs:    logs,
		opts: Options{
			Keys:   newTestWrapper(t),
			Logger: zerolog.New(logs).Level(zerolog.InfoLevel),
		},
	}
	_, _ = rand.Read(v.opts.VolumeID[:])
	require.NoError(t, os.Mkdir(v.backing+"/"+ReservedName, 0o700))
	require.NoError(t, os.WriteFile(v.backing+"/"+ReservedName+"/volume.json", []byte("{}"), 0o600))
	return v
}

// requireFUSE fails the test when FUSE is unavailable in CI and skips it
// elsewhere.
func requireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("FUSE is required in CI: %v", err)
		}
		t.Skipf("FUSE is not available: %v", err)
	}
}

// mount mounts the volume on a new temporary directory and unmounts it when
// the test ends, even if it fails.
func (v *testVolume) mount(t testing.TB) string {
	t.Helper()
	requireFUSE(t)
	mnt := t.TempDir()
	srv, err := Mount(v.backing, mnt, v.opts)
	require.NoError(t, err)
	t.Cleanup(func() { unmount(t, srv) })
	return mnt
}

// mountWith mounts with modified options.
func (v *testVolume) mountWith(t testing.TB, change func(*Options)) string {
	t.Helper()
	saved := v.opts
	change(&v.opts)
	defer func() { v.opts = saved }()
	return v.mount(t)
}

func unmount(t testing.TB, srv *fuse.Server) {
	t.Helper()
	if err := srv.Unmount(); err != nil {
		t.Errorf("failed to unmount: %v", err)
		return
	}
	srv.Wait()
}

// mountNew creates a volume and mounts it.
func mountNew(t testing.TB) (*testVolume, string) {
	t.Helper()
	v := newTestVolume(t)
	return v, v.mount(t)
}
