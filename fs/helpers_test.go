//go:build linux

package fs

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/keys"
)

// helperEnv makes the test binary run a helper instead of the tests.
const helperEnv = "COFFER_FS_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "mmap":
		os.Exit(mmapHelper())
	case "fsize":
		os.Exit(fsizeHelper())
	case "suid":
		os.Exit(suidHelper())
	}
	os.Exit(m.Run())
}

// mmapHelper maps MMAP_PATH shared and writable, copies MMAP_MARKER to each
// of MMAP_OFFSETS, says "mapped", and on "sync" from stdin syncs and unmaps.
func mmapHelper() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "mmap helper:", err)
		return 1
	}
	f, err := os.OpenFile(os.Getenv("MMAP_PATH"), os.O_RDWR, 0)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(err)
	}
	for s := range strings.SplitSeq(os.Getenv("MMAP_OFFSETS"), ",") {
		off, err := strconv.Atoi(s)
		if err != nil {
			return fail(err)
		}
		copy(m[off:], os.Getenv("MMAP_MARKER"))
	}
	fmt.Println("mapped")

	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fail(err)
	}
	if err := unix.Msync(m, unix.MS_SYNC); err != nil {
		return fail(err)
	}
	if err := unix.Munmap(m); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	return 0
}

// ringShim adapts a *keys.Ring to KeyWrapper until the ring takes the
// associated data as a function of the key ID (see the fs to keys note). It
// is only race-free because tests never rotate during a wrap; the returned
// ID is checked all the same.
type ringShim struct {
	*keys.Ring
}

func newRing(t testing.TB) ringShim {
	t.Helper()
	r, err := keys.NewRing()
	require.NoError(t, err)
	return ringShim{r}
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
			Keys:   newRing(t),
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
