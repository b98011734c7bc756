//go:build linux

package stress

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/check"
)

// Overwriters are this test binary run with childEnv=overwriter: they write
// a file of overwriteRegions regions of overwriteRegion bytes, fsync it,
// then overwrite one region after the other in place with one pwrite each,
// printing one byte after the first write and after every overwrite that
// returned. Region contents are overwriteData(file seed, op number).
const (
	overwriteRegion  = 1 << 20
	overwriteRegions = 4
)

func runOverwriter(args []string) int {
	fs := flag.NewFlagSet("overwriter", flag.ContinueOnError)
	path := fs.String("path", "", "file in the mount")
	seed := fs.Uint64("seed", 1, "seed")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fd, err := unix.Open(*path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for r := range overwriteRegions {
		if pwriteAll(fd, overwriteData(*seed, r), int64(r)*overwriteRegion).err != 0 {
			return 0
		}
	}
	if unix.Fsync(fd) != nil {
		return 0
	}
	for op := overwriteRegions; ; op++ {
		if _, err := os.Stdout.Write([]byte{'.'}); err != nil {
			return 1
		}
		off := int64(op%overwriteRegions) * overwriteRegion
		if pwriteAll(fd, overwriteData(*seed, op), off).err != 0 {
			return 0 // the mount died
		}
	}
}

// overwriteData is what op writes: the first overwriteRegions ops fill the
// file, each later one rewrites region op % overwriteRegions.
func overwriteData(seed uint64, op int) []byte {
	return pattern(seed*1000+uint64(op)+1, overwriteRegion)
}

// TestKillDuringOverwrite kills the mount while a process overwrites 1 MiB
// regions of a file in place, one pwrite each. The daemon saves the old
// bytes in the file's undo record right before it overwrites them, so the
// test watches the undo folder with inotify and kills the mount as soon as
// a record was written: the kill then often cuts the daemon's backing
// write of the region in the middle. After each kill, every block must read
// back as the last acknowledged write of it or the one in flight, none may
// fail, and coffer fsck, run before the remount, must find at most
// restorable cut overwrites.
func TestKillDuringOverwrite(t *testing.T) {
	v := newVolume(t, "")
	seed := *exerciserSeed
	if seed == 0 {
		seed = rand.Uint64() & (1<<40 - 1)
	}
	r := rand.New(rand.NewPCG(seed, 0x0fe7))
	rounds := scale(15, 200)
	t.Logf("overwrite kills: seed %d, %d rounds (rerun with -args -stress.seed=%d)", seed, rounds, seed)

	undoDir := filepath.Join(v.backing, ".coffer", "undo")
	require.NoError(t, os.MkdirAll(undoDir, 0o700))
	restored := 0
	for round := range rounds {
		name := fmt.Sprintf("ow-%d-%d", seed, round)
		fileSeed := seed + uint64(round)
		cmd := exec.Command(os.Args[0], "-path", v.path(name), "-seed", strconv.FormatUint(fileSeed, 10))
		cmd.Env = append(os.Environ(), childEnv+"=overwriter")
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = &bytes.Buffer{}
		watch := watchUndo(t, undoDir)
		require.NoError(t, cmd.Start())
		registerProc(cmd)

		// Kill right after a random number of undo records were written.
		watch.wait(t, 1+r.IntN(12))
		v.kill(t)
		watch.close()
		ticks, _ := io.ReadAll(stdout)
		require.NoError(t, waitProc(t, cmd), "%s", cmd.Stderr)
		acked := len(ticks) - 1 // ops after the initial fill that returned

		detach(t, v.mnt)
		report := fsck(t, v)
		for _, p := range report.Problems {
			if assert.Equal(t, check.RepairRestore, p.Repair, "round %d: %+v", round, p) {
				restored++
			}
		}
		v.mount(t)
		checkOverwrites(t, v.path(name), fileSeed, overwriteRegions+acked)
		if t.Failed() {
			t.Fatalf("round %d failed (seed %d)", round, seed)
		}
	}
	t.Logf("overwrite kills: %d rounds, %d cut overwrites restored from undo records", rounds, restored)
}

// checkOverwrites checks the file after a kill: inFlight is the number of
// the op that was running (it may not have started).
func checkOverwrites(t *testing.T, path string, seed uint64, inFlight int) {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	for region := range overwriteRegions {
		last := region // the last acknowledged op that wrote the region
		for op := region; op < inFlight; op += overwriteRegions {
			last = op
		}
		old := overwriteData(seed, last)
		var next []byte
		if inFlight%overwriteRegions == region {
			next = overwriteData(seed, inFlight)
		}
		for b := 0; b < overwriteRegion/BlockSize; b++ {
			off := int64(region)*overwriteRegion + int64(b)*BlockSize
			got := preadAll(fd, BlockSize, off)
			require.Zero(t, got.err, "block %d fails after the kill", off/BlockSize)
			want := old[b*BlockSize : (b+1)*BlockSize]
			ok := bytes.Equal(got.data, want)
			if !ok && next != nil {
				ok = bytes.Equal(got.data, next[b*BlockSize:(b+1)*BlockSize])
			}
			require.True(t, ok, "block %d is neither the acknowledged data nor the write in flight",
				off/BlockSize)
		}
	}
}

// undoWatch reports writes to the files of the undo folder.
type undoWatch struct {
	fd int
}

func watchUndo(t *testing.T, dir string) *undoWatch {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	require.NoError(t, err)
	_, err = unix.InotifyAddWatch(fd, dir, unix.IN_MODIFY)
	require.NoError(t, err)
	return &undoWatch{fd: fd}
}

// wait returns once n writes to undo records were seen.
func (w *undoWatch) wait(t *testing.T, n int) {
	t.Helper()
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(readyTimeout)
	for seen := 0; seen < n; {
		left := time.Until(deadline)
		require.Positive(t, left, "saw %d undo record writes of %d", seen, n)
		fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(left.Milliseconds())+1); err != nil && err != unix.EINTR {
			require.NoError(t, err)
		}
		m, err := unix.Read(w.fd, buf)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		require.NoError(t, err)
		for off := 0; off+unix.SizeofInotifyEvent <= m; seen++ {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

func (w *undoWatch) close() { _ = unix.Close(w.fd) }
