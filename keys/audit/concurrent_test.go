package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

// Environment of the writer processes TestConcurrentWriters starts: the
// test binary runs appendMain instead of the tests when helperEnv is set.
const (
	helperEnv     = "COFFER_AUDIT_TEST_WRITER"
	helperLog     = "COFFER_AUDIT_TEST_LOG"
	helperBacking = "COFFER_AUDIT_TEST_BACKING"
	helperVolume  = "COFFER_AUDIT_TEST_VOLUME"
	helperCount   = "COFFER_AUDIT_TEST_COUNT"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		if err := appendMain(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// appendMain appends helperCount unkeyed records, with a long reason so
// that an interleaved write would show, one Open per record as separate
// commands do.
func appendMain() error {
	var vol keys.VolumeID
	if err := vol.UnmarshalText([]byte(os.Getenv(helperVolume))); err != nil {
		return err
	}
	n, err := strconv.Atoi(os.Getenv(helperCount))
	if err != nil {
		return err
	}
	reason := strings.Repeat(os.Getenv(helperEnv), 900)
	for i := range n {
		l, err := Open(os.Getenv(helperLog), vol, Options{Backing: os.Getenv(helperBacking)})
		if err != nil {
			return err
		}
		err = l.Record(context.Background(), Event{Type: EventUnlock,
			Err: fmt.Errorf("%d %s", i, reason)})
		if cerr := l.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// TestConcurrentWriters runs several processes and goroutines appending to
// one log at once: every line must be whole, and the chain one chain.
func TestConcurrentWriters(t *testing.T) {
	const procs, perProc, goroutines = 4, 15, 4
	v := newTestVolume(t)
	exe, err := os.Executable()
	require.NoError(t, err)

	var wg sync.WaitGroup
	errs := make(chan error, procs+1)
	for p := range procs {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+string(rune('a'+p)),
			helperLog+"="+v.log, helperBacking+"="+v.backing, helperVolume+"="+v.vol.String(),
			helperCount+"="+strconv.Itoa(perProc))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		wg.Go(func() {
			if err := cmd.Wait(); err != nil {
				errs <- fmt.Errorf("writer %d: %v: %s", p, err, out.String())
			}
		})
	}
	// A keyed writer in this process, as a mount beside CLI commands.
	l := v.open(t, true)
	for range goroutines {
		wg.Go(func() {
			for range perProc {
				if err := l.Record(context.Background(), Event{Type: EventRotationProgress,
					Count: 1}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, l.Close())
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	rep, err := v.verify(t, true)
	require.NoError(t, err)
	want := (procs+goroutines)*perProc + 1 // and the closing checkpoint
	assert.Equal(t, want, rep.Records)
	assert.Equal(t, procs*perProc, rep.Events[EventUnlock])
	assert.Equal(t, goroutines*perProc, rep.Events[EventRotationProgress])
	assert.True(t, rep.Anchored)
}
