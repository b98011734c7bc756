//go:build linux

package fs

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/keyfile"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// frozenNames is a volume with encrypted names as this version writes it:
// a tar of its backing directory and master key file (tar keeps the sticky
// bit of symbolic links, which git would drop). TestFrozenNamesVolume reads
// it forever; COFFER_WRITE_FROZEN=1 writes it again, which is only right
// before the format is released.
const frozenNames = "testdata/volume-names-v1.tar.gz"

// frozenEntries is the tree inside the frozen volume: path, then the
// content of a file, "->target" for a symbolic link, or "/" for a
// directory.
var frozenEntries = [][2]string{
	{"config", "/"},
	{"config/prod-db-password.conf", "Password=hunter2"},
	{"config/Prod-DB-Password.conf", "a name that differs only in case"},
	{"config/" + strings.Repeat("long-", 51), "a 255-byte name with a sidecar"},
	{"Ünïcödé 名前 🔐", "unicode"},
	{"link", "->config/prod-db-password.conf"},
	{"long-link", "->" + strings.Repeat("t", 4095)},
	{"empty", ""},
}

func TestFrozenNamesVolume(t *testing.T) {
	if os.Getenv("COFFER_WRITE_FROZEN") == "1" {
		writeFrozenNames(t)
	}
	dir := t.TempDir()
	extractTar(t, frozenNames, dir)
	backing, key := filepath.Join(dir, "backing"), filepath.Join(dir, "master.key")
	require.NoError(t, os.Chmod(key, 0o600))

	ctx := context.Background()
	cfg, err := keys.ReadConfig(backing)
	require.NoError(t, err)
	require.True(t, cfg.EncryptedNames())
	open := func(e keys.MasterEntry) (keys.Master, error) {
		e.URI = "file://" + key // the key moved since the volume was made
		return masterkey.Open(ctx, e, masterkey.Options{})
	}
	ring, _, err := keys.Unlock(ctx, cfg, open, keys.UnlockOptions{})
	require.NoError(t, err)

	v := &testVolume{backing: backing, logs: &logBuffer{},
		opts: Options{VolumeID: cfg.VolumeID, Keys: ring, EncryptNames: true, ReadOnly: true}}
	mnt := v.mount(t)
	for _, e := range frozenEntries {
		p := filepath.Join(mnt, e[0])
		switch {
		case e[1] == "/":
			st, err := os.Stat(p)
			require.NoError(t, err, e[0])
			assert.True(t, st.IsDir(), e[0])
		case strings.HasPrefix(e[1], "->"):
			target, err := os.Readlink(p)
			require.NoError(t, err, e[0])
			assert.Equal(t, e[1][2:], target, e[0])
		default:
			b, err := os.ReadFile(p)
			require.NoError(t, err, e[0])
			assert.Equal(t, e[1], string(b), e[0])
		}
	}
	b := make([]byte, 64)
	n, err := unix.Getxattr(filepath.Join(mnt, "empty"), "user.label", b)
	require.NoError(t, err)
	assert.Equal(t, "frozen", string(b[:n]))
	assert.Empty(t, v.logs.String(), "no warnings")
}

// writeFrozenNames makes the frozen volume and writes its tar.
func writeFrozenNames(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	backing, key := filepath.Join(dir, "backing"), filepath.Join(dir, "master.key")
	require.NoError(t, os.Mkdir(backing, 0o700))
	require.NoError(t, keyfile.Create(key))
	en, err := masterkey.Enroll(ctx, "file://"+key, masterkey.Options{})
	require.NoError(t, err)
	cfg, ring, err := keys.Init(ctx, backing, []keys.Enrollment{en}, keys.InitOptions{})
	require.NoError(t, err)

	v := &testVolume{backing: backing, logs: &logBuffer{},
		opts: Options{VolumeID: cfg.VolumeID, Keys: ring, EncryptNames: true}}
	mnt := v.mount(t)
	for _, e := range frozenEntries {
		p := filepath.Join(mnt, e[0])
		switch {
		case e[1] == "/":
			require.NoError(t, os.Mkdir(p, 0o755))
		case strings.HasPrefix(e[1], "->"):
			require.NoError(t, os.Symlink(e[1][2:], p))
		default:
			require.NoError(t, os.WriteFile(p, []byte(e[1]), 0o644))
		}
	}
	require.NoError(t, unix.Setxattr(filepath.Join(mnt, "empty"), "user.label", []byte("frozen"), 0))
	writeTar(t, dir, frozenNames)
}

// writeTar archives backing and master.key of dir into path.
func writeTar(t *testing.T, dir, path string) {
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, top := range []string{"backing", "master.key"} {
		require.NoError(t, filepath.Walk(filepath.Join(dir, top), func(p string, fi os.FileInfo, err error) error {
			require.NoError(t, err)
			rel, _ := filepath.Rel(dir, p)
			hdr, err := tar.FileInfoHeader(fi, "")
			require.NoError(t, err)
			hdr.Name, hdr.Uname, hdr.Gname, hdr.Uid, hdr.Gid = rel, "", "", 0, 0
			hdr.Format, hdr.PAXRecords = tar.FormatPAX, map[string]string{}
			list, err := listxattr(p)
			require.NoError(t, err)
			for name := range strings.SplitSeq(strings.TrimRight(string(list), "\x00"), "\x00") {
				if name != "" {
					v, err := getxattr(p, name)
					require.NoError(t, err)
					hdr.PAXRecords[paxXattr+name] = string(v)
				}
			}
			require.NoError(t, tw.WriteHeader(hdr))
			if fi.Mode().IsRegular() {
				b, err := os.ReadFile(p)
				require.NoError(t, err)
				_, err = tw.Write(b)
				require.NoError(t, err)
			}
			return nil
		}))
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
}

// extractTar unpacks a tar.gz into dir with the modes it records.
func extractTar(t *testing.T, path, dir string) {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		require.NoError(t, err)
		p := filepath.Join(dir, hdr.Name)
		require.True(t, strings.HasPrefix(p, dir+"/"), hdr.Name)
		mode := uint32(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeDir:
			require.NoError(t, os.MkdirAll(p, 0o700))
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(p, b, 0o600))
		default:
			t.Fatalf("unexpected tar member %s", hdr.Name)
		}
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, paxXattr); ok {
				require.NoError(t, unix.Lsetxattr(p, name, []byte(v), 0))
			}
		}
		require.NoError(t, unix.Chmod(p, mode))
	}
}

// paxXattr prefixes extended attributes in PAX records, as GNU tar does.
const paxXattr = "SCHILY.xattr."
