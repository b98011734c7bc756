//go:build linux

package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

const dropCachesPath = "/proc/sys/vm/drop_caches"

// dropCaches writes back the file system holding dir and drops the page,
// dentry and inode caches, so that the next phase starts cold. Without root
// it only writes back; canDrop reports whether caches can be dropped.
func dropCaches(dir string) error {
	if err := syncFS(dir); err != nil {
		return err
	}
	if !canDrop() {
		return nil
	}
	if err := os.WriteFile(dropCachesPath, []byte("3\n"), 0o200); err != nil {
		return fmt.Errorf("failed to drop caches: %w", err)
	}
	return nil
}

// canDrop reports whether this process may drop the kernel's caches.
func canDrop() bool {
	return unix.Access(dropCachesPath, unix.W_OK) == nil
}

// syncFS writes back the file system holding dir, and only that one: a
// global sync could block on another user's hung FUSE mount.
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("failed to open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("failed to sync %s: %w", dir, err)
	}
	return nil
}

// evict drops the cached pages of one open file, for file systems that keep
// their page cache across the drop (FUSE's is dropped too, but this makes
// the intent explicit and works without root).
func evict(f *os.File) error {
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("failed to evict %s from the page cache: %w", f.Name(), err)
	}
	return nil
}
