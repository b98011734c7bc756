//go:build linux

// Package fs is coffer's FUSE file system: a go-fuse node tree over a backing
// directory in which every regular file is stored encrypted in the format of
// package [github.com/cofferfs/coffer/fs/content].
//
// [Mount] mounts a backing directory; [NewRoot] returns the root node for
// callers that mount with go-fuse themselves. [Options] carries the volume ID,
// the [KeyWrapper] that wraps per-file data keys (the volume's key ring), a
// zerolog logger and the mount flags.
//
// # Concepts
//
// The node tree is go-fuse's loopback: every node embeds a
// [github.com/hanwen/go-fuse/v2/fs.LoopbackNode] created through the
// loopback's NewNode hook. With plaintext names (Options.EncryptNames
// false) the loopback answers namespace operations on the backing
// directory unchanged: names, directories, symlinks, hard links, renames
// (with RENAME_NOREPLACE and RENAME_EXCHANGE), permissions, owners, times,
// xattrs, statfs and special files are those of the backing directory, and
// only file contents are encrypted.
//
// With encrypted names the node answers every namespace operation itself,
// since the loopback builds backing paths from plaintext names: a node's
// backing path is the chain of its names, each encrypted under its parent
// directory's name key (package [github.com/cofferfs/coffer/fs/names]).
// Each directory node loads its key once from the directory record
// (.coffer.dir) and caches it; directories take their record with them when
// renamed, so cached keys stay valid. Names longer than 175 bytes get a
// hashed backing name and a sidecar, which create, link, rename, unlink and
// rmdir keep consistent. Symbolic links are regular backing files in the
// content format, marked by the sticky bit, whose content is the target.
// user.* extended attributes are encrypted with keys derived from the
// root's name secret. docs/format.md specifies all of it.
//
// The node overrides what touches contents:
//
//   - Lookup, Getattr, Statx, Setattr, Create, Link and Mknod report the
//     plaintext size of regular files, computed from the backing size alone,
//     and st_blocks as whole 4 KiB blocks of that size, so that no file
//     looks sparse.
//   - Open and Create return a handle that encrypts and decrypts. Setattr
//     with a size, ftruncate and fallocate (mode 0) go through the same
//     engine.
//   - In the root, the reserved folder ".coffer" (volume configuration) is
//     invisible: Lookup answers ENOENT and listings skip it. Creating it by
//     any means (create, mkdir, mknod, symlink, link, rename onto it)
//     answers EPERM.
//   - O_TMPFILE and copy_file_range answer ENOSYS; the kernel then fails
//     O_TMPFILE with EOPNOTSUPP and copies with reads and writes.
//
// Each backing inode with an open handle has one shared state, keyed by its
// device and inode number and reference-counted by handles, so hard links
// and repeated opens share it. It holds the file's lock and its unwrapped
// data key (DEK) as a [github.com/cofferfs/coffer/fs/content.Cipher],
// unwrapped once on first use and dropped with the last handle. A new
// file's backing file stays empty until the first write, which draws a
// random file ID and DEK, wraps the DEK with the ring's primary key (slot 0,
// generation 1) and writes the header together with the first blocks.
// Truncation to zero empties the backing file, so the next write starts
// over with a fresh key.
//
// Reads fetch the covering cipher blocks with one pread and decrypt them;
// requests aligned to blocks decrypt straight into the kernel's buffer.
// Writes read, decrypt and merge the partial first and last blocks, encrypt
// every touched block into one buffer and write it with one pwrite. Gaps
// left by writing past the end or truncating up are filled with encrypted
// zero blocks: the backing file never has holes, so a zeroed block is
// tampering, never silent zeros. Backing files are always opened read-write
// (a partial block write reads first), except on a read-only mount, and for
// read-only opens of files the daemon may not write.
//
// # Kernel caching
//
// File contents use the kernel page cache without FOPEN_KEEP_CACHE and
// without direct I/O: shared writable mmap works, every descriptor of the
// mount shares the page cache, and each open drops the cached pages of the
// file, so changes made behind the mount (another host on shared storage, a
// rotation tool) are seen on the next open. go-fuse's automatic invalidation
// (CAP_AUTO_INVAL_DATA) also drops cached pages when a refreshed mtime or
// size differs. The writeback cache is off: every write(2) reaches the
// daemon before it returns, which keeps the backing file the one source of
// truth and lets the kernel order writes and size updates.
//
// Attributes and directory entries are cached for one second, negative
// entries not at all. All changes made through the mount update the
// kernel's caches directly, so the timeouts only bound how long a change
// made behind the mount stays invisible; one second is the libfuse default
// and costs one LOOKUP or GETATTR per path and second, which matters for
// tree walks (tar, git status). Negative entries are not cached because the
// backing directory may gain files from outside the mount.
//
// O_APPEND is stripped from backing opens, since the handle writes at
// computed ciphertext offsets. The kernel sends each O_APPEND write at its
// cached end of file, taken under its inode lock, which all writes through
// this mount update; the handle uses that offset as it is. It cannot
// override it with its own idea of the end of file: the kernel writes back
// dirty mmap pages through any writable handle of the inode, possibly an
// O_APPEND one, and those writes must land where the page is.
//
// Requests are at most 1 MiB (MaxWrite), the kernel's limit. Kernel FUSE
// passthrough is explicitly disabled: every read and write must pass
// through the daemon.
//
// # Locking and concurrency
//
// go-fuse serves requests concurrently. Per file, a sync.RWMutex orders
// data access: reads share it; writes, truncation, fallocate and header
// creation hold it exclusively, so each read-modify-write of a block is
// atomic with respect to every other handle, including writeback of mmap
// pages. Attribute requests through a handle take it shared, so they never
// see a half-done truncation. The shared-state table has its own mutex,
// held only to look states up. The cached cipher is an atomic pointer,
// loaded under a separate mutex when a reader finds it empty.
//
// flock(2) locks are taken on the handle's backing descriptor, as they
// belong to the open file. POSIX record locks belong to a process, so each
// lock owner the kernel names gets its own open file description of the
// backing file and its locks are open file description locks there: a
// process's descriptors share its locks, any of them unlocks, closing any of
// them releases them (Mount passes the owner of each FLUSH to the handle,
// which go-fuse's node API does not), and F_GETLK names the holding process
// when it uses this mount. All of these locks also hold against other
// processes and mounts using the backing directory. Blocking requests poll
// (up to every 20 ms) rather than block, so that an interrupted caller
// leaves no lock behind.
//
// # Shared mode
//
// With Options.Shared, several coffer processes (hosts sharing the backing
// directory, or processes of one host) serve one backing directory at
// once, and nothing one process cached is trusted after another could have
// changed it. Entry and attribute timeouts are 0; files are opened with
// FOPEN_DIRECT_IO (mmap keeps working through CAP_DIRECT_IO_ALLOW_MMAP),
// so no page cache goes stale; sizes come from fstat at every request, as
// always; the cached data key is checked against the header's file ID at
// every request and loaded again when another process started the file
// over; the read path's check for a file that shrank behind the mount is
// off, since here that is a race, not damage.
//
// Processes coordinate through OFD byte-range locks on the backing files,
// at content.LockBase plus the backing offset (shared.go, docs/format.md
// "Shared mounts"): a read holds a read lock on its blocks; a change holds
// a write lock on the blocks it changes, to the end of the file when it
// touches the last block or the size, from offset 0 when it writes a new
// header. Inside a process the inode's mutex orders operations first, so
// the OFD locks (one descriptor per concurrent operation, from a pool per
// inode) only meet other processes'. A change that did not lock to the end
// of the file does not cut the file back when it fails. An O_APPEND
// write(2) (told from page write-back by FUSE_WRITE_CACHE) goes to the end
// of the file as it is under the lock, not to the kernel's idea of it,
// which other mounts' appends make stale. Applications'
// POSIX locks are confined below LockBase in every mode; flock(2) locks of
// a shared mount become OFD locks of the whole application range. Each
// process keeps its own undo records (<file ID>.<host>-<pid>); recovery
// looks at all of a file's records, and a reader, which holds only a read
// lock, returns a cut block's pre-image without writing it back.
//
// # Errors
//
// Handlers return syscall.Errno; one function converts Go errors. A block
// that fails authentication (altered, swapped, moved from another file,
// zeroed, cut short), a header that does not parse, a newer format version,
// or a key slot that no ring key unwraps is an integrity error: the request
// fails with EIO and a warning is logged with the backing path, the block
// number (or "header") and the reason. Other blocks of the file stay
// readable; a read never returns wrong plaintext, and a failed read never
// returns part of its range. A file whose last block was cut to 1..40 bytes
// (a torn tail) or whose backing size is below the header size reports one
// byte more than its readable blocks, so that reading to the end reaches the
// damage and fails with EIO instead of ending quietly; writing into that
// region fails with EIO too, and truncating below it or to zero repairs the
// file. A read past the end of a file that shrank behind the mount, while
// the kernel still holds its old size, fails with EIO too (the kernel would
// otherwise hand the reader zeros as data), unless a truncation through the
// mount explains it. If the current key slot fails but the other one
// unwraps, the file is readable and a warning is logged.
//
// # Threat model
//
// Who can read or modify the backing directory but not the master keys
// learns directory structure, name lengths, exact sizes, times, permissions
// and xattrs outside user.*, but no content, and with encrypted names no
// name, symlink target or user.* xattr (with plaintext names, all of
// these). A tampered or foreign encrypted name is hidden from listings with
// a warning naming the backing entry; a missing or damaged directory record
// makes that directory fail with EIO. Altered, reordered, swapped or transplanted
// blocks and headers are detected on read (EIO). Not detected: removing
// whole trailing blocks (the file reads shorter once the kernel learns the
// new size), replacing a file with an older version of itself (rollback),
// and moving, deleting or renaming whole files. The daemon holds the
// unwrapped DEKs of open files in memory, in Go's heap, until their last
// handle closes; a file given a new DEK behind the mount while open here
// reads as EIO until it is reopened. See docs/limitations.md and
// docs/format.md.
//
// # Failures and crashes
//
// Writes rewrite blocks in place, each request with one backing write.
// Before a write overwrites bytes the backing file holds, it saves them in
// the file's undo record (.coffer/undo/<file ID>, undo.go) with one write;
// the record goes when the file's last handle closes after its writes
// finished.
// A write, truncation or fallocate that fails (ENOSPC, EFBIG, an I/O error)
// writes those bytes back and cuts the file to its old size, leaving it as
// it was. A kill of the daemon in the middle of an overwrite leaves a block
// that is new up to a page boundary and old after it; the read path
// recognises it against its pre-image (content.Torn), returns and writes
// back the pre-image and logs a warning. What a kill can still damage is
// the last block (an append, a growth of the last block past its old end,
// or a truncation cut short), which reads as EIO; coffer fsck names it and
// can repair it. Power loss is out of scope: nothing orders the record and
// the overwrite on disk.
package fs
