//go:build linux

package fs

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// recorder runs file operations below dir and writes down what they return,
// so that the transcripts of a plain directory and of a mount can be
// compared. Paths never appear in the transcript.
type recorder struct {
	t   *testing.T
	dir string
	out []string
	fds map[string]int
}

func newRecorder(t *testing.T, dir string) *recorder {
	return &recorder{t: t, dir: dir, fds: map[string]int{}}
}

func (r *recorder) p(name string) string {
	return filepath.Join(r.dir, name)
}

func (r *recorder) logf(format string, args ...any) {
	r.out = append(r.out, fmt.Sprintf(format, args...))
}

// errStr renders an error as its errno name, without paths.
func errStr(err error) string {
	if err == nil {
		return "ok"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return unix.ErrnoName(en)
	}
	return "error " + err.Error()
}

// data renders read bytes: short ones verbatim, long ones by length and hash.
func data(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%d bytes sha256 %x", len(b), sha256.Sum256(b))
}

func (r *recorder) close() {
	for id, fd := range r.fds {
		_ = unix.Close(fd)
		delete(r.fds, id)
	}
}

func (r *recorder) open(id, name string, flags int, perm uint32) {
	fd, err := unix.Open(r.p(name), flags|unix.O_CLOEXEC, perm)
	r.logf("open %s %s %#o: %s", id, name, flags, errStr(err))
	if err == nil {
		r.fds[id] = fd
	}
}

func (r *recorder) closeFd(id string) {
	r.logf("close %s: %s", id, errStr(unix.Close(r.fds[id])))
	delete(r.fds, id)
}

func (r *recorder) write(id string, b []byte) {
	n, err := unix.Write(r.fds[id], b)
	r.logf("write %s %d: %d %s", id, len(b), n, errStr(err))
}

func (r *recorder) pwrite(id string, b []byte, off int64) {
	n, err := unix.Pwrite(r.fds[id], b, off)
	r.logf("pwrite %s %d@%d: %d %s", id, len(b), off, n, errStr(err))
}

func (r *recorder) pread(id string, n int, off int64) {
	b := make([]byte, n)
	got, err := unix.Pread(r.fds[id], b, off)
	r.logf("pread %s %d@%d: %s %s", id, n, off, data(b[:max(got, 0)]), errStr(err))
}

func (r *recorder) read(id string, n int) {
	b := make([]byte, n)
	got, err := unix.Read(r.fds[id], b)
	r.logf("read %s %d: %s %s", id, n, data(b[:max(got, 0)]), errStr(err))
}

func (r *recorder) seek(id string, off int64, whence int) {
	got, err := unix.Seek(r.fds[id], off, whence)
	r.logf("seek %s %d/%d: %d %s", id, off, whence, got, errStr(err))
}

func (r *recorder) fstat(id string) {
	var st unix.Stat_t
	err := unix.Fstat(r.fds[id], &st)
	r.logf("fstat %s: %s %s", id, statStr(&st), errStr(err))
}

func (r *recorder) stat(name string) {
	var st unix.Stat_t
	err := unix.Lstat(r.p(name), &st)
	r.logf("lstat %s: %s %s", name, statStr(&st), errStr(err))
}

// statStr renders the attributes that must match between plain and mount.
func statStr(st *unix.Stat_t) string {
	s := fmt.Sprintf("mode %#o nlink %d", st.Mode, st.Nlink)
	if st.Mode&unix.S_IFMT == unix.S_IFREG || st.Mode&unix.S_IFMT == unix.S_IFLNK {
		s += fmt.Sprintf(" size %d", st.Size)
	}
	return s
}

func (r *recorder) readFile(name string) {
	b, err := readAll(r.p(name))
	r.logf("readfile %s: %s %s", name, data(b), errStr(err))
}

// readAll reads a file with read(2), so errors keep their errno.
func readAll(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}

func (r *recorder) truncate(name string, size int64) {
	r.logf("truncate %s %d: %s", name, size, errStr(unix.Truncate(r.p(name), size)))
}

func (r *recorder) ftruncate(id string, size int64) {
	r.logf("ftruncate %s %d: %s", id, size, errStr(unix.Ftruncate(r.fds[id], size)))
}

func (r *recorder) fsync(id string) {
	r.logf("fsync %s: %s", id, errStr(unix.Fsync(r.fds[id])))
}

func (r *recorder) rename(from, to string, flags uint) {
	err := unix.Renameat2(unix.AT_FDCWD, r.p(from), unix.AT_FDCWD, r.p(to), flags)
	r.logf("rename %s %s %d: %s", from, to, flags, errStr(err))
}

func (r *recorder) unlink(name string) {
	r.logf("unlink %s: %s", name, errStr(unix.Unlink(r.p(name))))
}

func (r *recorder) mkdir(name string) {
	r.logf("mkdir %s: %s", name, errStr(unix.Mkdir(r.p(name), 0o755)))
}

func (r *recorder) rmdir(name string) {
	r.logf("rmdir %s: %s", name, errStr(unix.Rmdir(r.p(name))))
}

func (r *recorder) symlink(target, name string) {
	r.logf("symlink %s %s: %s", target, name, errStr(unix.Symlink(target, r.p(name))))
}

func (r *recorder) readlink(name string) {
	b := make([]byte, 256)
	n, err := unix.Readlink(r.p(name), b)
	r.logf("readlink %s: %q %s", name, b[:max(n, 0)], errStr(err))
}

func (r *recorder) link(from, to string) {
	r.logf("link %s %s: %s", from, to, errStr(unix.Link(r.p(from), r.p(to))))
}

func (r *recorder) chmod(name string, mode uint32) {
	r.logf("chmod %s %#o: %s", name, mode, errStr(unix.Chmod(r.p(name), mode)))
}

func (r *recorder) utimes(name string, atime, mtime int64) {
	ts := []unix.Timespec{unix.NsecToTimespec(atime), unix.NsecToTimespec(mtime)}
	err := unix.UtimesNanoAt(unix.AT_FDCWD, r.p(name), ts, unix.AT_SYMLINK_NOFOLLOW)
	var st unix.Stat_t
	_ = unix.Lstat(r.p(name), &st)
	r.logf("utimes %s: %s atime %d mtime %d", name, errStr(err),
		st.Atim.Nano(), st.Mtim.Nano())
}

func (r *recorder) fchmod(id string, mode uint32) {
	err := unix.Fchmod(r.fds[id], mode)
	var st unix.Stat_t
	_ = unix.Fstat(r.fds[id], &st)
	r.logf("fchmod %s %#o: %s mode %#o", id, mode, errStr(err), st.Mode)
}

func (r *recorder) fchown(id string) {
	err := unix.Fchown(r.fds[id], os.Getuid(), os.Getgid())
	var st unix.Stat_t
	_ = unix.Fstat(r.fds[id], &st)
	r.logf("fchown %s: %s mode %#o", id, errStr(err), st.Mode)
}

func (r *recorder) futimes(id string, atime, mtime int64) {
	ts := []unix.Timespec{unix.NsecToTimespec(atime), unix.NsecToTimespec(mtime)}
	err := unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", r.fds[id]), ts, 0)
	var st unix.Stat_t
	_ = unix.Fstat(r.fds[id], &st)
	r.logf("futimes %s: %s atime %d mtime %d", id, errStr(err), st.Atim.Nano(), st.Mtim.Nano())
}

func (r *recorder) fgetxattr(id, attr string) {
	b := make([]byte, 64)
	n, err := unix.Fgetxattr(r.fds[id], attr, b)
	r.logf("fgetxattr %s %s: %q %s", id, attr, b[:max(n, 0)], errStr(err))
}

func (r *recorder) fsetxattr(id, attr, value string) {
	r.logf("fsetxattr %s %s: %s", id, attr, errStr(unix.Fsetxattr(r.fds[id], attr, []byte(value), 0)))
}

func (r *recorder) xattrs(name string) {
	p := r.p(name)
	r.logf("setxattr: %s", errStr(unix.Lsetxattr(p, "user.a", []byte("one"), 0)))
	r.logf("setxattr create existing: %s", errStr(unix.Lsetxattr(p, "user.a", []byte("x"), unix.XATTR_CREATE)))
	r.logf("setxattr: %s", errStr(unix.Lsetxattr(p, "user.b", []byte("two"), 0)))
	b := make([]byte, 64)
	n, err := unix.Lgetxattr(p, "user.a", b)
	r.logf("getxattr: %q %s", b[:max(n, 0)], errStr(err))
	n, err = unix.Llistxattr(p, b)
	names := strings.Split(strings.TrimRight(string(b[:max(n, 0)]), "\x00"), "\x00")
	slices.Sort(names)
	r.logf("listxattr: %q %s", names, errStr(err))
	r.logf("removexattr: %s", errStr(unix.Lremovexattr(p, "user.a")))
	_, err = unix.Lgetxattr(p, "user.a", b)
	r.logf("getxattr removed: %s", errStr(err))
}

func (r *recorder) readdir(name string) {
	fd, err := unix.Open(r.p(name), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.logf("readdir %s: %s", name, errStr(err))
		return
	}
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 4096)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil || n == 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	slices.Sort(names)
	r.logf("readdir %s: %q", name, names)
}

func (r *recorder) mkfifo(name string) {
	r.logf("mkfifo %s: %s", name, errStr(unix.Mkfifo(r.p(name), 0o644)))
}

func (r *recorder) lseek(id string, off int64, whence int) {
	got, err := unix.Seek(r.fds[id], off, whence)
	r.logf("lseek %s %d/%d: %d %s", id, off, whence, got, errStr(err))
}

// pattern returns n bytes that differ at every block and offset.
func pattern(seed, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed*31 + i*7 + i/4096)
	}
	return b
}

const (
	rdwr  = unix.O_RDWR
	creat = unix.O_CREAT
)

var opCases = []struct {
	name string
	run  func(r *recorder)
}{
	{name: "create write read", run: func(r *recorder) {
		r.open("f", "a", creat|rdwr, 0o644)
		r.write("f", []byte("hello"))
		r.pread("f", 100, 0)
		r.fstat("f")
		r.closeFd("f")
		r.stat("a")
		r.readFile("a")
	}},
	{name: "O_EXCL", run: func(r *recorder) {
		r.open("f", "a", creat|unix.O_EXCL|unix.O_WRONLY, 0o600)
		r.closeFd("f")
		r.open("g", "a", creat|unix.O_EXCL|unix.O_WRONLY, 0o600)
		r.open("h", "a", creat|unix.O_WRONLY, 0o600)
		r.closeFd("h")
		r.stat("a")
	}},
	{name: "O_TRUNC", run: func(r *recorder) {
		r.open("f", "a", creat|unix.O_WRONLY, 0o644)
		r.write("f", pattern(1, 10000))
		r.closeFd("f")
		r.open("g", "a", unix.O_WRONLY|unix.O_TRUNC, 0)
		r.fstat("g")
		r.write("g", []byte("short"))
		r.closeFd("g")
		r.readFile("a")
		r.open("h", "a", creat|unix.O_RDWR|unix.O_TRUNC, 0o644)
		r.pread("h", 10, 0)
		r.closeFd("h")
		r.stat("a")
	}},
	{name: "O_APPEND from two descriptors", run: func(r *recorder) {
		r.open("x", "a", creat|unix.O_WRONLY, 0o644)
		r.write("x", pattern(2, 5000))
		r.closeFd("x")
		r.open("f", "a", unix.O_WRONLY|unix.O_APPEND, 0)
		r.open("g", "a", unix.O_RDWR|unix.O_APPEND, 0)
		for i := range 6 {
			r.write("f", pattern(i, 1000+i*1500))
			r.write("g", []byte(fmt.Sprintf("<%d>", i)))
		}
		r.seek("g", 0, 0)
		r.write("g", []byte("still appended"))
		r.pread("g", 20, 0)
		r.closeFd("f")
		r.closeFd("g")
		r.readFile("a")
		r.stat("a")
	}},
	{name: "O_RDWR read and write one descriptor", run: func(r *recorder) {
		r.open("f", "a", creat|rdwr, 0o644)
		r.write("f", pattern(3, 9000))
		r.seek("f", 100, 0)
		r.read("f", 50)
		r.write("f", []byte("middle"))
		r.seek("f", 0, 0)
		r.read("f", 200)
		r.seek("f", -10, 2)
		r.read("f", 100)
		r.read("f", 100)
		r.lseek("f", 10, unix.SEEK_DATA)
		r.lseek("f", 10, unix.SEEK_HOLE)
		r.lseek("f", 9000, unix.SEEK_HOLE)
		r.lseek("f", 9006, unix.SEEK_DATA)
		r.closeFd("f")
		r.readFile("a")
	}},
	{name: "random writes across block boundaries", run: func(r *recorder) {
		rng := rand.New(rand.NewPCG(42, 1))
		r.open("f", "a", creat|rdwr, 0o644)
		for i := range 300 {
			off := int64(rng.IntN(12 * 4096))
			n := rng.IntN(3*4096) + 1
			switch rng.IntN(4) {
			case 0, 1:
				r.pwrite("f", pattern(i, n), off)
			case 2:
				r.pread("f", n, off)
			default:
				r.ftruncate("f", off)
			}
		}
		r.fstat("f")
		r.closeFd("f")
		r.readFile("a")
	}},
	{name: "reads at any offset", run: func(r *recorder) {
		r.open("f", "a", creat|rdwr, 0o644)
		r.write("f", pattern(4, 3*4096+100))
		for _, off := range []int64{0, 1, 4095, 4096, 4097, 8191, 12288, 12387, 12388, 12389, 50000} {
			for _, n := range []int{1, 100, 4095, 4096, 4097, 9000} {
				r.pread("f", n, off)
			}
		}
		r.closeFd("f")
	}},
	{name: "truncate up and down", run: func(r *recorder) {
		r.open("f", "a", creat|rdwr, 0o644)
		r.write("f", pattern(5, 10000))
		for _, size := range []int64{10000, 8192, 8191, 4097, 4096, 1, 0, 5, 4096, 20000, 3, 123456} {
			r.truncate("a", size)
			r.stat("a")
			r.readFile("a")
			r.ftruncate("f", size/2)
			r.fstat("f")
			r.pread("f", 300, size/2-150)
		}
		r.closeFd("f")
	}},
	{name: "write past end reads zeros", run: func(r *recorder) {
		r.open("f", "a", creat|rdwr, 0o644)
		r.write("f", []byte("start"))
		r.pwrite("f", []byte("far"), 3*4096+10)
		r.pwrite("f", []byte("farther"), 300000)
		r.fstat("f")
		r.pread("f", 9000, 0)
		r.pread("f", 100, 299950)
		// The plain directory stores the gap as a hole, so only SEEK_DATA
		// at the start agrees; the dense case is in "O_RDWR ...".
		r.lseek("f", 10, unix.SEEK_DATA)
		r.lseek("f", 400000, unix.SEEK_DATA)
		r.closeFd("f")
		r.readFile("a")
	}},
	{name: "rename over existing", run: func(r *recorder) {
		r.open("f", "a", creat|rdwr, 0o644)
		r.write("f", []byte("content of a"))
		r.closeFd("f")
		r.open("g", "b", creat|rdwr, 0o644)
		r.write("g", []byte("content of b, longer"))
		r.rename("a", "b", 0)
		r.readFile("b")
		r.stat("a")
		r.pread("g", 100, 0)
		r.fstat("g")
		r.closeFd("g")
		r.open("h", "c", creat|rdwr, 0o644)
		r.closeFd("h")
		r.rename("b", "c", unix.RENAME_NOREPLACE)
		r.rename("b", "c", unix.RENAME_EXCHANGE)
		r.readFile("b")
		r.readFile("c")
	}},
	{name: "unlink while open", run: func(r *recorder) {
		r.open("f", "a", creat|rdwr, 0o644)
		r.write("f", pattern(6, 5000))
		r.unlink("a")
		r.stat("a")
		r.pwrite("f", []byte("after unlink"), 4090)
		r.ftruncate("f", 6000)
		r.fstat("f")
		r.pread("f", 6000, 0)
		r.closeFd("f")
		r.readdir(".")
	}},
	{name: "attributes of an open file after unlink", run: func(r *recorder) {
		// The kernel sends these without the file's handle.
		r.open("f", "a", creat|rdwr, 0o644)
		r.write("f", pattern(9, 5000))
		r.fsetxattr("f", "user.a", "one")
		r.fgetxattr("f", "security.capability")
		r.unlink("a")
		r.fchmod("f", 0o600)
		r.fchown("f")
		r.futimes("f", 1_000_000_000_123_456_789, 1_200_000_000_987_654_321)
		r.fgetxattr("f", "user.a")
		r.fgetxattr("f", "security.capability")
		r.fstat("f")
		r.closeFd("f")
	}},
	{name: "create with set-ID bits", run: func(r *recorder) {
		r.open("f", "a", creat|rdwr, 0o6755)
		r.fstat("f")
		r.write("f", []byte("x"))
		r.closeFd("f")
		r.stat("a")
	}},
	{name: "hard link shares content", run: func(r *recorder) {
		r.open("f", "a", creat|rdwr, 0o644)
		r.write("f", pattern(7, 7000))
		r.link("a", "b")
		r.stat("a")
		r.open("g", "b", rdwr, 0)
		r.pwrite("g", []byte("via b"), 4094)
		r.pread("f", 20, 4090)
		r.ftruncate("f", 4096)
		r.fstat("g")
		r.closeFd("f")
		r.closeFd("g")
		r.readFile("b")
		r.unlink("a")
		r.stat("b")
	}},
	{name: "symlink", run: func(r *recorder) {
		r.open("f", "a", creat|rdwr, 0o644)
		r.write("f", []byte("target"))
		r.closeFd("f")
		r.symlink("a", "s")
		r.symlink("nowhere", "dangling")
		r.readlink("s")
		r.stat("s")
		r.readFile("s")
		r.readFile("dangling")
	}},
	{name: "chmod and utimens", run: func(r *recorder) {
		r.open("f", "a", creat|rdwr, 0o644)
		r.write("f", []byte("x"))
		r.closeFd("f")
		r.chmod("a", 0o600)
		r.stat("a")
		r.chmod("a", 0o4755)
		r.stat("a")
		r.utimes("a", 1_000_000_000_123_456_789, 1_200_000_000_987_654_321)
		r.mkdir("d")
		r.chmod("d", 0o700)
		r.stat("d")
		r.utimes("d", 1e18, 1e18)
	}},
	{name: "xattrs", run: func(r *recorder) {
		r.open("f", "a", creat|rdwr, 0o644)
		r.closeFd("f")
		r.xattrs("a")
		r.mkdir("d")
		r.xattrs("d")
	}},
	{name: "directories and special files", run: func(r *recorder) {
		r.mkdir("d")
		r.mkdir("d")
		r.mkdir("d/e")
		r.open("f", "d/e/file", creat|rdwr, 0o644)
		r.closeFd("f")
		r.rmdir("d")
		r.readdir("d")
		r.readdir("d/e")
		r.rename("d/e", "e2", 0)
		r.readdir(".")
		r.unlink("e2/file")
		r.rmdir("e2")
		r.mkfifo("fifo")
		r.stat("fifo")
		r.readdir(".")
	}},
	{name: "fsync", run: func(r *recorder) {
		r.open("f", "a", creat|rdwr, 0o644)
		r.write("f", pattern(8, 100000))
		r.fsync("f")
		r.closeFd("f")
		r.open("g", "a", unix.O_RDONLY, 0)
		r.fsync("g")
		r.closeFd("g")
		r.readFile("a")
	}},
}

func TestOperationsMatchPlainDirectory(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted names %v", enc), func(t *testing.T) {
			v := newTestVolume(t)
			v.opts.EncryptNames = enc
			runOpCases(t, v.mount(t))
		})
	}
}

func runOpCases(t *testing.T, mnt string) {
	for i, tt := range opCases {
		t.Run(tt.name, func(t *testing.T) {
			plainDir := t.TempDir()
			mountDir := filepath.Join(mnt, fmt.Sprintf("case%d", i))
			require.NoError(t, unix.Mkdir(mountDir, 0o755))

			plain := newRecorder(t, plainDir)
			defer plain.close()
			tt.run(plain)
			mounted := newRecorder(t, mountDir)
			defer mounted.close()
			tt.run(mounted)

			require.Equal(t, len(plain.out), len(mounted.out))
			for j := range plain.out {
				assert.Equal(t, plain.out[j], mounted.out[j], "step %d", j)
			}
		})
	}
}
