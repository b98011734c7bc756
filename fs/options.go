//go:build linux

package fs

import (
	"errors"
	"fmt"
	"log"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
)

// ReservedName is the folder in the root of the backing directory that holds
// the volume configuration. It is invisible through the mount and cannot be
// created there.
const ReservedName = ".coffer"

// maxWrite is the largest READ and WRITE request we ask the kernel for: 1 MiB,
// the most Linux allows (go-fuse lowers it if the kernel's
// fs.fuse.max_pages_limit is smaller). Large requests amortise the FUSE round
// trip over many blocks.
const maxWrite = 1 << 20

// cacheTimeout is the kernel's attribute and directory entry cache lifetime.
// See the package documentation for why one second.
const cacheTimeout = time.Second

// KeyWrapper wraps and unwraps the per-file data encryption keys. The
// volume's key ring implements it; package fs never sees ring keys.
type KeyWrapper interface {
	// Wrap encrypts dek with the ring's primary key. It calls ad exactly
	// once with that key's ID to get the associated data to bind, and
	// returns the same key ID with the wrapped key. The primary lookup and
	// the encryption must use one snapshot of the ring, so a concurrent
	// rotation cannot make the ID in the associated data differ from the
	// key that wrapped.
	Wrap(dek []byte, ad func(keyID uint32) []byte) (keyID uint32, wrapped []byte, err error)

	// Unwrap decrypts a key wrapped by ring key keyID with associatedData.
	Unwrap(keyID uint32, wrapped, associatedData []byte) ([]byte, error)
}

// Options configures a coffer file system.
type Options struct {
	// VolumeID is the volume's random identifier; every wrapped key is
	// bound to it.
	VolumeID [16]byte

	// Keys wraps new data keys and unwraps existing ones. Required.
	Keys KeyWrapper

	// EncryptNames encrypts entry names, symbolic link targets and user
	// extended attributes (the volume config's "names" setting). It must
	// match what the volume was created with.
	EncryptNames bool

	// Logger receives Info lines for mount events, Warn lines for
	// tampered or corrupt files, and with Debug the go-fuse request trace.
	// The zero value discards everything.
	Logger zerolog.Logger

	// ReadOnly mounts read-only and opens backing files read-only.
	ReadOnly bool

	// AllowOther lets users other than the mounting one use the mount and
	// turns on the kernel's permission checks (default_permissions).
	AllowOther bool

	// Integrity, if not nil, is called for every request that fails an
	// integrity check (and returns EIO), with the file's path relative to
	// the mount root ("/dir/file"), the block number (-1 for the header)
	// and the cause. It runs in the request: it must be quick and safe for
	// concurrent use, and do its own rate limiting (a scan of a damaged
	// file calls it once per failed request). The audit log uses it.
	Integrity func(path string, block int64, err error)

	// Debug logs every FUSE request at debug level. The go-fuse trace
	// includes file names, xattr values and the first bytes of every
	// written buffer in plaintext: never enable it on real data.
	Debug bool

	// NoExec mounts with noexec: programs in the mount cannot be run.
	NoExec bool

	// Shared lets other coffer processes, on this host or on others
	// sharing the backing directory, serve the same backing directory at
	// once, each with Shared set. The kernel caches no attributes, entries
	// or file contents of the mount, sizes and headers are read from the
	// backing files at each request, and changes hold byte-range locks on
	// the backing files. See the package documentation, "Shared mode".
	Shared bool
}

// NewRoot returns the root node of a coffer file system over the backing
// directory, for mounting with go-fuse. Mount is the usual entry point: with
// NewRoot alone, closing a descriptor does not release the POSIX locks of
// the closing process (go-fuse's node API does not pass the lock owner of a
// flush); they are released when the file's last descriptor is closed.
func NewRoot(backing string, opts Options) (gofs.InodeEmbedder, error) {
	_, root, err := newRoot(backing, opts)
	return root, err
}

// newRoot is NewRoot, also returning the file system's shared state.
func newRoot(backing string, opts Options) (*filesystem, gofs.InodeEmbedder, error) {
	if opts.Keys == nil {
		return nil, nil, errors.New("failed to create file system: no key wrapper")
	}
	// Backing files are opened without following symlinks, so the root
	// path itself must be free of them.
	abs, err := filepath.Abs(backing)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("failed to resolve backing directory: %w", err)
	}

	var st syscall.Stat_t
	if err := syscall.Stat(abs, &st); err != nil {
		return nil, nil, fmt.Errorf("failed to stat backing directory: %w", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return nil, nil, fmt.Errorf("failed to use backing directory %s: not a directory", abs)
	}

	f := newFilesystem(abs, opts)
	if err := f.checkNamesMode(); err != nil {
		return nil, nil, err
	}
	if f.encrypted() {
		if err := f.initRootRecord(); err != nil {
			return nil, nil, fmt.Errorf("failed to create the root's directory record: %w", err)
		}
	}
	f.root = &gofs.LoopbackRoot{Path: abs, Dev: st.Dev}
	//nolint:staticcheck // NewNode is the loopback's documented hook for our node type.
	f.root.NewNode = f.newNode
	rootNode := f.newNode(f.root, nil, "", &st)
	f.root.RootNode = rootNode
	return f, rootNode, nil
}

// Mount mounts a coffer file system over backing on mountpoint and serves it
// in the background. The caller unmounts with Server.Unmount and may wait for
// the end of serving with Server.Wait.
func Mount(backing, mountpoint string, opts Options) (*fuse.Server, error) {
	f, root, err := newRoot(backing, opts)
	if err != nil {
		return nil, err
	}

	gopts := mountOptions(backing, opts)
	raw := &flushOwnerFS{RawFileSystem: gofs.NewNodeFS(root, gopts), fs: f}
	server, err := fuse.NewServer(raw, mountpoint, &gopts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("failed to mount %s on %s: %w", backing, mountpoint, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		_ = server.Unmount()
		return nil, fmt.Errorf("failed to mount %s on %s: %w", backing, mountpoint, err)
	}
	if err := raiseReadAhead(mountpoint); err != nil {
		opts.Logger.Debug().Err(err).Msg("kept the kernel's read-ahead")
	}
	opts.Logger.Info().Str("backing", backing).Str("mountpoint", mountpoint).
		Bool("read_only", opts.ReadOnly).Msg("mounted")
	return server, nil
}

// mountOptions returns the go-fuse options for a coffer mount.
func mountOptions(backing string, opts Options) *gofs.Options {
	timeout := cacheTimeout
	if opts.Shared {
		timeout = 0
	}
	fuseLog := log.New(logWriter{l: opts.Logger}, "", 0)

	mo := fuse.MountOptions{
		FsName:      backing,
		Name:        "coffer",
		MaxWrite:    maxWrite,
		EnableLocks: true,
		AllowOther:  opts.AllowOther,
		Debug:       opts.Debug,
		Logger:      fuseLog,
		// Every read and write must pass through the daemon to be
		// decrypted or encrypted; kernel passthrough would expose
		// ciphertext. We never return passthrough fds, and say so.
		DisabledCapabilities: fuse.CAP_PASSTHROUGH,
		// Splicing helps only replies that point at a file descriptor;
		// ours carry decrypted bytes. Without this, go-fuse would fill
		// and drain a pipe for every READ reply before falling back to
		// writev: three wasted system calls per read.
		DisableSplice: true,
		// We clear setuid and setgid bits ourselves (killpriv.go), which
		// spares a GETXATTR round trip before every write(2).
		ExtraCapabilities: killpriv,
	}
	if opts.Shared {
		// Shared mounts open files with FOPEN_DIRECT_IO (no page cache
		// to go stale); this keeps mmap working on them.
		mo.ExtraCapabilities |= fuse.CAP_DIRECT_IO_ALLOW_MMAP
	}
	if opts.ReadOnly {
		mo.Options = append(mo.Options, "ro")
	}
	if opts.NoExec {
		mo.Options = append(mo.Options, "noexec")
	}
	if opts.AllowOther {
		mo.Options = append(mo.Options, "default_permissions")
	}

	return &gofs.Options{
		MountOptions: mo,
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		Logger:       fuseLog,
	}
}

// logWriter forwards go-fuse's log.Logger output to zerolog: the request
// trace at debug level, a recovered panic in a handler at error level.
type logWriter struct {
	l zerolog.Logger
}

// Write implements io.Writer.
func (w logWriter) Write(p []byte) (int, error) {
	msg := strings.TrimRight(string(p), "\n")
	level := zerolog.DebugLevel
	if strings.HasPrefix(msg, "panic") {
		level = zerolog.ErrorLevel
	}
	w.l.WithLevel(level).Str("component", "go-fuse").Msg(msg)
	return len(p), nil
}
