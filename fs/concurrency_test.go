//go:build linux

package fs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestConcurrentWritersAndAppenders(t *testing.T) {
	_, mnt := mountNew(t)
	const (
		writers   = 8
		region    = 3*bs + 1000 // not block aligned: neighbours share blocks
		chunk     = 700
		appenders = 6
		records   = 200
		recLen    = 64
	)
	disjoint := filepath.Join(mnt, "disjoint")
	appended := filepath.Join(mnt, "appended")
	require.NoError(t, os.WriteFile(disjoint, nil, 0o644))
	require.NoError(t, os.WriteFile(appended, nil, 0o644))

	var wg sync.WaitGroup
	errs := make(chan error, writers+appenders+1)
	for w := range writers {
		wg.Go(func() { errs <- writeRegion(disjoint, w, region, chunk) })
	}
	for a := range appenders {
		wg.Go(func() { errs <- appendRecords(appended, a, records, recLen) })
	}
	// A reader running alongside must never see an error.
	stop := make(chan struct{})
	var reader sync.WaitGroup
	reader.Go(func() { errs <- readUntil(disjoint, stop) })

	wg.Wait()
	close(stop)
	reader.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	got, err := os.ReadFile(disjoint)
	require.NoError(t, err)
	require.Len(t, got, writers*region)
	for w := range writers {
		assert.Equal(t, pattern(w, region), got[w*region:(w+1)*region], "region %d", w)
	}

	got, err = os.ReadFile(appended)
	require.NoError(t, err)
	require.Len(t, got, appenders*records*recLen)
	seen := map[string]bool{}
	for rec := range bytes.SplitSeq(got, []byte("\n")) {
		if len(rec) > 0 {
			seen[string(rec)] = true
		}
	}
	for a := range appenders {
		for i := range records {
			assert.True(t, seen[record(a, i, recLen)], "record %d/%d missing or torn", a, i)
		}
	}
}

// writeRegion writes region w of the file through its own descriptor, in
// chunks, from the end backwards so that gaps appear and get filled.
func writeRegion(path string, w, region, chunk int) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	data := pattern(w, region)
	for end := region; end > 0; end -= chunk {
		start := max(0, end-chunk)
		if _, err := f.WriteAt(data[start:end], int64(w*region+start)); err != nil {
			return err
		}
	}
	return f.Close()
}

// appendRecords appends newline-terminated records through O_APPEND.
func appendRecords(path string, a, n, recLen int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for i := range n {
		if _, err := f.Write([]byte(record(a, i, recLen) + "\n")); err != nil {
			return err
		}
	}
	return f.Close()
}

func record(a, i, recLen int) string {
	s := fmt.Sprintf("appender %d record %d ", a, i)
	return s + string(bytes.Repeat([]byte{'.'}, recLen-1-len(s)))
}

// readUntil reads the whole file over and over until stop is closed.
func readUntil(path string, stop <-chan struct{}) error {
	buf := make([]byte, 128<<10)
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		for off := int64(0); ; {
			n, err := unix.Pread(int(f.Fd()), buf, off)
			if err != nil {
				f.Close()
				return err
			}
			if n == 0 {
				break
			}
			off += int64(n)
		}
		f.Close()
	}
}
