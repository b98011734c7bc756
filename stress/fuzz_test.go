//go:build linux

package stress

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	cofferfs "github.com/cofferfs/coffer/fs"
	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/keyfile"
)

// Fuzz targets for parsers of untrusted bytes that have none in their own
// package. The header, config, ring payload, sealed ring (with an identity
// master), master-key URI and passphrase parameter parsers are fuzzed in
// fs/content, keys, keys/masterkey and keys/passphrase.
//
// The fuzz volume in testdata/volume is a test volume with its key file: a
// ring sealed under testdata/volume/master.key. It is test data, never a
// secret. Files of this volume hold plaintextOf(file ID), so a read of any
// file it ever produced can be checked without knowing how it was written.

var regen = flag.Bool("stress.regen", false, "write a new fuzz volume to testdata/volume")

var (
	fuzzVolumeID = keys.VolumeID{0xf0, 0x22, 0xc0, 0xff, 0xe7}
	fuzzMasterID = "f022c0ff"
)

// fuzzVolume is the fuzz volume's ring and sealed ring.
type fuzzVolume struct {
	ring   *ring
	sealed []byte
	master keys.Master
}

var (
	fuzzOnce sync.Once
	fuzzVol  *fuzzVolume
	fuzzErr  error
)

// loadFuzzVolume unseals testdata/volume/ring.sealed.
func loadFuzzVolume(t testing.TB) *fuzzVolume {
	t.Helper()
	fuzzOnce.Do(func() { fuzzVol, fuzzErr = readFuzzVolume() })
	require.NoError(t, fuzzErr, "rerun with -run TestFuzzVolume -args -stress.regen to create it")
	return fuzzVol
}

func readFuzzVolume() (*fuzzVolume, error) {
	key, err := os.ReadFile(filepath.Join("testdata", "volume", "master.key"))
	if err != nil {
		return nil, err
	}
	m, err := keyfile.New(keys.SecretFromBytes(key))
	if err != nil {
		return nil, err
	}
	sealed, err := os.ReadFile(filepath.Join("testdata", "volume", "ring.sealed"))
	if err != nil {
		return nil, err
	}
	r, err := keys.UnsealRing(context.Background(), sealed, fuzzVolumeID, fuzzMasterID, m)
	if err != nil {
		return nil, err
	}
	return &fuzzVolume{ring: &ring{Ring: r, purged: map[uint32]bool{}}, sealed: sealed, master: m}, nil
}

// writeFuzzVolume creates a new fuzz volume in testdata/volume.
func writeFuzzVolume(t *testing.T) {
	dir := filepath.Join("testdata", "volume")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	key := make([]byte, keyfile.Size)
	_, _ = rand.NewChaCha8([32]byte{0xf0, 0x22}).Read(key)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "master.key"), key, 0o600))
	m, err := keyfile.New(keys.SecretFromBytes(key))
	require.NoError(t, err)
	r, err := keys.NewRing()
	require.NoError(t, err)
	sealed, err := keys.SealRing(context.Background(), r, fuzzVolumeID, fuzzMasterID, m)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ring.sealed"), sealed, 0o644))
}

// TestFuzzVolume checks the fuzz volume: the ring unseals, and a file it
// encrypts reads back through the kernel-free driver.
func TestFuzzVolume(t *testing.T) {
	if *regen {
		writeFuzzVolume(t)
	}
	v := loadFuzzVolume(t)
	d := newRawDriver(t, v)
	for _, size := range []int{0, 1, 4095, 4096, 3*4096 + 7} {
		b := d.genuine(t, size)
		reads := d.read(t, b)
		assert.Equal(t, (size+BlockSize-1)/BlockSize, len(reads), "reads of a %d-byte file", size)
		for i, r := range reads {
			assert.Zero(t, r.status, "block %d", i)
		}
		assert.True(t, bytes.Equal(plaintextOf(fileIDOf(b), size), joinReads(reads)), "a %d-byte file", size)
	}
}

// plaintextOf is the contents of a fuzz volume file with file ID id.
func plaintextOf(id [16]byte, n int) []byte {
	var key [32]byte
	copy(key[:], id[:])
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

func fileIDOf(backing []byte) [16]byte {
	var id [16]byte
	if len(backing) >= 24 {
		copy(id[:], backing[8:24])
	}
	return id
}

// rawDriver serves a backing directory with package fs through go-fuse's
// node bridge, without a kernel mount: fast enough to fuzz, and the same
// code the kernel drives.
type rawDriver struct {
	backing string
	raw     fuse.RawFileSystem
	n       int
}

func newRawDriver(t testing.TB, v *fuzzVolume) *rawDriver {
	t.Helper()
	d := &rawDriver{backing: t.TempDir()}
	require.NoError(t, os.Mkdir(filepath.Join(d.backing, cofferfs.ReservedName), 0o700))
	root, err := cofferfs.NewRoot(d.backing, cofferfs.Options{
		VolumeID: fuzzVolumeID, Keys: v.ring, Logger: zerolog.Nop(),
	})
	require.NoError(t, err)
	d.raw = gofs.NewNodeFS(root, &gofs.Options{})
	return d
}

// blockRead is one block read: its bytes or an error status.
type blockRead struct {
	data   []byte
	status fuse.Status
}

// read stores backing as a file and reads it block by block, one block
// past the size it reports.
func (d *rawDriver) read(t testing.TB, backing []byte) []blockRead {
	t.Helper()
	d.n++
	name := "f" + string(rune('a'+d.n%26))
	require.NoError(t, os.WriteFile(filepath.Join(d.backing, name), backing, 0o600))
	defer os.Remove(filepath.Join(d.backing, name))

	var entry fuse.EntryOut
	st := d.raw.Lookup(nil, &fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}, name, &entry)
	require.Equal(t, fuse.OK, st, "lookup")
	defer d.raw.Forget(entry.NodeId, 1)
	var open fuse.OpenOut
	st = d.raw.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: entry.NodeId},
		Flags: syscall.O_RDONLY}, &open)
	require.Equal(t, fuse.OK, st, "open")
	defer d.raw.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: entry.NodeId}, Fh: open.Fh})

	var reads []blockRead
	// Like the kernel's buffered reads, stop at the size the lookup
	// reported: a read past it answers EIO when the file shrank behind the
	// mount, which is a different check.
	for off := uint64(0); off < entry.Attr.Size; off += BlockSize {
		buf := make([]byte, BlockSize)
		res, st := d.raw.Read(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: entry.NodeId},
			Fh: open.Fh, Offset: off, Size: BlockSize}, buf)
		r := blockRead{status: st}
		if st == fuse.OK {
			data, bst := res.Bytes(buf)
			r.data, r.status = bytes.Clone(data), bst
			res.Done()
		}
		reads = append(reads, r)
	}
	return reads
}

// genuine writes a file of size bytes of plaintextOf(its ID) through the
// driver and returns its backing bytes.
func (d *rawDriver) genuine(t testing.TB, size int) []byte {
	t.Helper()
	var entry fuse.EntryOut
	var out fuse.CreateOut
	name := "genuine"
	st := d.raw.Create(nil, &fuse.CreateIn{InHeader: fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID},
		Flags: syscall.O_RDWR | syscall.O_TRUNC, Mode: 0o600}, name, &out)
	require.Equal(t, fuse.OK, st, "create")
	entry = out.EntryOut
	defer d.raw.Forget(entry.NodeId, 1)
	defer d.raw.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: entry.NodeId}, Fh: out.Fh})
	defer os.Remove(filepath.Join(d.backing, name))
	if size == 0 {
		return nil
	}

	// The file ID is drawn on the first write: write a byte, read the ID,
	// then write the contents it implies.
	write := func(data []byte, off uint64) {
		n, st := d.raw.Write(nil, &fuse.WriteIn{InHeader: fuse.InHeader{NodeId: entry.NodeId},
			Fh: out.Fh, Offset: off, Size: uint32(len(data))}, data)
		require.Equal(t, fuse.OK, st, "write")
		require.Equal(t, uint32(len(data)), n)
	}
	write([]byte{0}, 0)
	b, err := os.ReadFile(filepath.Join(d.backing, name))
	require.NoError(t, err)
	write(plaintextOf(fileIDOf(b), size), 0)
	b, err = os.ReadFile(filepath.Join(d.backing, name))
	require.NoError(t, err)
	return b
}

func joinReads(reads []blockRead) []byte {
	var out []byte
	for _, r := range reads {
		out = append(out, r.data...)
	}
	return out
}

// FuzzBackingFile reads arbitrary backing files through package fs: header
// parsing, key slots, the size rules (torn tails, sizes no file has) and
// block decryption together. Every read must return the plaintext of the
// file whose ID the header names, at its offset, nothing, or EIO; never
// other bytes, and never a panic.
func FuzzBackingFile(f *testing.F) {
	v := loadFuzzVolume(f)
	d := newRawDriver(f, v)
	for _, size := range []int{1, 40, 4096, 4097, 2*4096 + 100} {
		f.Add(d.genuine(f, size))
	}
	two := append(d.genuine(f, 2*4096), d.genuine(f, 4096)[headerSize:]...)
	f.Add(two)
	f.Add(make([]byte, headerSize+100))
	f.Fuzz(func(t *testing.T, backing []byte) {
		reads := d.read(t, backing)
		want := plaintextOf(fileIDOf(backing), len(reads)*BlockSize)
		for i, r := range reads {
			switch {
			case r.status == fuse.EIO:
			case r.status != fuse.OK:
				t.Fatalf("block %d: status %v, want OK or EIO", i, r.status)
			case !matches(want, r.data, int64(i*BlockSize)):
				t.Fatalf("block %d: %d bytes that are not the plaintext of the file", i, len(r.data))
			}
		}
	})
}

// FuzzUnsealRingKeyfile opens sealed rings with a key-file master: the
// sealing layer (nonce, XChaCha20-Poly1305, length checks) over the payload
// parser. Only the genuine sealed ring may open, to the genuine ring.
func FuzzUnsealRingKeyfile(f *testing.F) {
	v := loadFuzzVolume(f)
	f.Add(v.sealed, fuzzMasterID)
	f.Add(v.sealed[:40], fuzzMasterID)
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, sealed []byte, masterID string) {
		r, err := keys.UnsealRing(context.Background(), sealed, fuzzVolumeID, masterID, v.master)
		if err != nil {
			require.Nil(t, r)
			assert.True(t, errors.Is(err, keys.ErrWrongKey) || errors.Is(err, keys.ErrMalformed),
				"error %v is neither wrong key nor malformed", err)
			return
		}
		assert.Equal(t, v.sealed, sealed, "a forged sealed ring opened")
		assert.Equal(t, fuzzMasterID, masterID)
		assert.Equal(t, v.ring.Keys(), r.Keys())
	})
}

// FuzzRedactURI checks that RedactURI, which master-key URIs from the
// volume config go through before any log line or error message, never
// lets the value of a sensitive parameter through, however the rest of the
// URI looks, and that redacting twice changes nothing more.
func FuzzRedactURI(f *testing.F) {
	f.Add("pkcs11:token=t;object=k", 0, "1234")
	f.Add("hcvault://user:pw@host:8200/transit/keys/k?", 2, "s3cr3t")
	f.Add("aws-kms://arn?region=x&", 9, "tok")
	names := []string{"pin-value", "pin", "password", "passphrase", "secret", "secret-key", "secret_key",
		"access-token", "access_token", "client-secret", "client_secret"}
	f.Fuzz(func(t *testing.T, prefix string, which int, secret string) {
		once := keys.RedactURI(prefix)
		assert.Equal(t, once, keys.RedactURI(once), "redacting twice")

		if len(secret) < 4 || strings.ContainsAny(secret, "?&;#") || strings.Contains(prefix, secret) ||
			strings.Contains("REDACTED", secret) || !strings.HasSuffix(prefix, "?") &&
			!strings.HasSuffix(prefix, "&") && !strings.HasSuffix(prefix, ";") {
			return
		}
		name := names[uint(which)%uint(len(names))]
		uri := prefix + name + "=" + secret
		out := keys.RedactURI(uri)
		for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
			if !strings.Contains(prefix+name, form) {
				assert.NotContains(t, out, form, "%q redacts to %q", uri, out)
			}
		}
	})
}
