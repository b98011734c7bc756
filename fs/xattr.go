//go:build linux

package fs

import (
	"bytes"
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/names"
)

// xattrKey returns the volume's attribute key, derived from the root's name
// secret on first use.
func (f *filesystem) xattrKey() (*names.XattrKey, error) {
	f.names.mu.Lock()
	defer f.names.mu.Unlock()
	if f.names.xattr != nil {
		return f.names.xattr, nil
	}
	_, secret, err := f.loadDirKey(f.backing)
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	k, err := names.NewXattrKey(secret)
	if err != nil {
		return nil, err
	}
	f.names.xattr = k
	return k, nil
}

// xattrTarget returns the backing path of n and, for a user attribute, its
// backing name and the key; for other namespaces the name is unchanged and
// the key nil.
func (n *node) xattrTarget(attr string) (string, string, *names.XattrKey, error) {
	p, err := n.abs()
	if err != nil {
		return "", "", nil, err
	}
	bn, k, err := n.xattrName(attr)
	return p, bn, k, err
}

// xattrName returns the backing name of attribute attr and, for a user
// attribute, the key.
func (n *node) xattrName(attr string) (string, *names.XattrKey, error) {
	if !names.Encrypted(attr) {
		return attr, nil, nil
	}
	if n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFLNK {
		return "", nil, syscall.EPERM // Linux has no user attributes on symlinks
	}
	k, err := n.fs.xattrKey()
	if err != nil {
		return "", nil, err
	}
	bn, err := k.EncryptName(attr)
	if err != nil {
		return "", nil, syscall.ERANGE
	}
	return bn, k, nil
}

// getxattr reads a whole backing attribute value by path.
func getxattr(p, name string) ([]byte, error) {
	return readXattr(func(b []byte) (int, error) { return unix.Lgetxattr(p, name, b) })
}

// fgetxattr reads a whole backing attribute value through a descriptor.
func fgetxattr(fd int, name string) ([]byte, error) {
	return readXattr(func(b []byte) (int, error) { return unix.Fgetxattr(fd, name, b) })
}

// readXattr reads a whole value with get, which fills b or, given nil,
// returns the size.
func readXattr(get func(b []byte) (int, error)) ([]byte, error) {
	for {
		sz, err := get(nil)
		if err != nil {
			return nil, err
		}
		b := make([]byte, sz)
		sz, err = get(b)
		if err == unix.ERANGE {
			continue
		}
		if err != nil {
			return nil, err
		}
		return b[:sz], nil
	}
}

// Getxattr reads an attribute; user attributes are decrypted.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	bn, k := attr, (*names.XattrKey)(nil)
	var err error
	if n.fs.encrypted() {
		bn, k, err = n.xattrName(attr)
	}
	if err == syscall.ERANGE || err == syscall.EPERM {
		return 0, syscall.ENODATA
	}
	if err != nil {
		return 0, n.fs.errno(err)
	}
	// An open file is read through its descriptor: tar asks for
	// security.capability twice per file it writes.
	var v []byte
	if !n.open.with(func(h *handle) { v, err = fgetxattr(h.fd, bn) }) {
		if !n.fs.encrypted() {
			sz, errno := n.LoopbackNode.Getxattr(ctx, attr, dest)
			return sz, n.stale(errno)
		}
		var p string
		if p, err = n.abs(); err != nil {
			return 0, n.fs.errno(err)
		}
		v, err = getxattr(p, bn)
	}
	if err != nil {
		return 0, n.stale(gofs.ToErrno(err))
	}
	if k != nil {
		v, err = k.OpenValue(bn, v)
		if err != nil {
			n.fs.log.Warn().Str("backing", n.backingPath()).Str("reason", err.Error()).
				Msg("extended attribute failed integrity check, returning EIO")
			return 0, syscall.EIO
		}
	}
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Setxattr writes an attribute; user attributes are encrypted.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if !n.fs.encrypted() {
		return n.stale(n.LoopbackNode.Setxattr(ctx, attr, data, flags))
	}
	p, bn, k, err := n.xattrTarget(attr)
	if err != nil {
		return n.fs.errno(err)
	}
	if k != nil {
		data = k.SealValue(bn, data)
	}
	return n.stale(gofs.ToErrno(unix.Lsetxattr(p, bn, data, int(flags))))
}

// Removexattr removes an attribute.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if !n.fs.encrypted() {
		return n.stale(n.LoopbackNode.Removexattr(ctx, attr))
	}
	p, bn, _, err := n.xattrTarget(attr)
	if err == syscall.ERANGE || err == syscall.EPERM {
		return syscall.ENODATA
	}
	if err != nil {
		return n.fs.errno(err)
	}
	return n.stale(gofs.ToErrno(unix.Lremovexattr(p, bn)))
}

// Listxattr lists attributes; user attribute names are decrypted, and names
// that do not decrypt are left out with a warning.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if !n.fs.encrypted() {
		sz, errno := n.LoopbackNode.Listxattr(ctx, dest)
		return sz, n.stale(errno)
	}
	p, err := n.abs()
	if err != nil {
		return 0, n.fs.errno(err)
	}
	raw, err := listxattr(p)
	if err != nil {
		return 0, n.stale(gofs.ToErrno(err))
	}
	var out []byte
	for _, name := range bytes.Split(raw, []byte{0}) {
		if len(name) == 0 {
			continue
		}
		s := string(name)
		if names.Encrypted(s) {
			k, err := n.fs.xattrKey()
			if err != nil {
				return 0, n.fs.errno(err)
			}
			if s, err = k.DecryptName(s); err != nil {
				n.fs.log.Warn().Str("backing", p).Str("attribute", string(name)).
					Str("reason", err.Error()).Msg("extended attribute name does not decrypt, hiding it")
				continue
			}
		}
		out = append(append(out, s...), 0)
	}
	if len(dest) == 0 {
		return uint32(len(out)), 0
	}
	if len(dest) < len(out) {
		return uint32(len(out)), syscall.ERANGE
	}
	return uint32(copy(dest, out)), 0
}

// listxattr reads the whole backing attribute list.
func listxattr(p string) ([]byte, error) {
	for {
		sz, err := unix.Llistxattr(p, nil)
		if err != nil {
			return nil, err
		}
		b := make([]byte, sz)
		sz, err = unix.Llistxattr(p, b)
		if err == unix.ERANGE {
			continue
		}
		if err != nil {
			return nil, err
		}
		return b[:sz], nil
	}
}
