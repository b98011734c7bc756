//go:build linux

package fs

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOpenRacesRenameAndUnlink opens an existing name with O_CREAT while
// another goroutine renames or unlinks it, as logrotate does. On a local
// file system every open succeeds: it opens the old file or creates a new
// one. Through the mount the kernel's OPEN of the node it looked up can
// reach the daemon while the rename or unlink of that node is in flight,
// when the node's path is already stale; the open must not fail with
// ENOENT because of that.
func TestOpenRacesRenameAndUnlink(t *testing.T) {
	for _, mode := range []struct {
		name    string
		encrypt bool
		remove  func(dir string) error
	}{
		{"rename/encrypted", true, func(d string) error {
			return os.Rename(filepath.Join(d, "app.log"), filepath.Join(d, "app.log.1"))
		}},
		{"unlink/encrypted", true, func(d string) error { return os.Remove(filepath.Join(d, "app.log")) }},
		{"rename/plain", false, func(d string) error {
			return os.Rename(filepath.Join(d, "app.log"), filepath.Join(d, "app.log.1"))
		}},
		{"unlink/plain", false, func(d string) error { return os.Remove(filepath.Join(d, "app.log")) }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			v := newTestVolume(t)
			v.opts.EncryptNames = mode.encrypt
			mnt := v.mount(t)
			dir := filepath.Join(mnt, "cr")
			require.NoError(t, os.Mkdir(dir, 0o755))

			done := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					_ = mode.remove(dir) // ENOENT while the name is absent
				}
			}()
			errs := map[string]int{}
			var first error
			for range 1500 {
				err := appendLine(filepath.Join(dir, "app.log"))
				if err != nil {
					errs[errorName(err)]++
					if first == nil {
						first = err
					}
				}
			}
			close(done)
			wg.Wait()
			require.Empty(t, errs, "opens with O_CREAT failed (first: %v)", first)
		})
	}
}

// appendLine opens p as a log writer does and appends a line.
func appendLine(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("x\n"))
	return errors.Join(err, f.Close())
}

// errorName names the errno inside err, or err itself.
func errorName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e.Error()
	}
	return err.Error()
}
