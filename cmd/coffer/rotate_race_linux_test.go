package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

// The tests of this file run coffer rotate, master add and master remove
// as processes against one volume at once. A rotation is held at a fixed
// point with the COFFER_TEST_PAUSE hook (a named pipe, no sleeps), the other
// commands run, and the rotation goes on. Afterwards every master key the
// volume lists must unlock it on its own (coffer fsck --master ID), since a
// master key whose sealed copy cannot reach the current ring is locked out.

// pausedRotate is a coffer rotate process held at a pause point.
type pausedRotate struct {
	cmd            *exec.Cmd
	dir            string // the named pipes paused and resume
	stdout, stderr bytes.Buffer
	exited         chan struct{}
}

// startPausedRotate starts coffer rotate with the pause hook at point and
// returns once it is held there. If the rotation ends before reaching the
// point, the test fails with its output.
func startPausedRotate(t *testing.T, f *fixture, point string, env ...string) *pausedRotate {
	t.Helper()
	return startPaused(t, []string{"rotate", f.backing}, point, env...)
}

// startPaused starts coffer with args and the pause hook at point, and
// returns once it is held there.
func startPaused(t *testing.T, args []string, point string, env ...string) *pausedRotate {
	t.Helper()
	p := &pausedRotate{dir: t.TempDir(), exited: make(chan struct{})}
	require.NoError(t, syscall.Mkfifo(filepath.Join(p.dir, "paused"), 0o600))
	require.NoError(t, syscall.Mkfifo(filepath.Join(p.dir, "resume"), 0o600))
	// Opened read-write, so that the open does not wait for the process;
	// the process opens it for writing.
	r, err := os.OpenFile(filepath.Join(p.dir, "paused"), os.O_RDWR, 0)
	require.NoError(t, err)
	defer r.Close()
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(append(os.Environ(), mainEnv+"=1", "COFFER_TEST_PAUSE="+point+":"+p.dir),
		env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		require.Equal(t, "paused at "+point+"\n", s)
	case <-p.exited:
		t.Fatalf("rotate ended before pausing at %s: exit %d\nstdout: %s\nstderr: %s", point,
			p.cmd.ProcessState.ExitCode(), p.stdout.String(), p.stderr.String())
	}
	return p
}

// resume lets the rotation go on and waits for it to end.
func (p *pausedRotate) resume(t *testing.T) result {
	t.Helper()
	opened := make(chan error, 1)
	go func() {
		// Waits for the process's open for reading; closing gives it EOF.
		w, err := os.OpenFile(filepath.Join(p.dir, "resume"), os.O_WRONLY, 0)
		if err == nil {
			err = w.Close()
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		require.NoError(t, err)
	case <-p.exited:
		t.Fatalf("rotate ended while paused: exit %d\nstderr: %s",
			p.cmd.ProcessState.ExitCode(), p.stderr.String())
	}
	<-p.exited
	return result{stdout: p.stdout.String(), stderr: p.stderr.String(),
		code: p.cmd.ProcessState.ExitCode()}
}

// requireEveryMasterOpens checks that each master key the volume lists
// unlocks it alone and reads every file.
func requireEveryMasterOpens(t *testing.T, f *fixture) []masterListEntry {
	t.Helper()
	list := f.masters(t)
	for _, m := range list {
		r := cliProcess(t, "fsck", f.backing, "--master", m.ID)
		require.Equal(t, exitOK, r.code, "master key %s (%s) does not open the volume:\n%s",
			m.ID, m.URI, r.stderr)
	}
	return list
}

// TestRotateMasterAddRace adds and removes master keys while a rotation of
// a mounted volume is held at each of its commit points, and between kills
// of an interrupted rotation. No master key may be locked out, and the
// purge must not remove a ring key an enrolled master key still needs.
func TestRotateMasterAddRace(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.populate(t, 30)
	first := f.masterID(t, f.keyURI())

	// Added after rotate read the config and opened the master keys, but
	// before it took the rotation lock: the rotation refuses to start,
	// with nothing written, and the next one includes the new key.
	p := startPausedRotate(t, f.fixture, "opened")
	k2 := f.newKey(t, "k2.key")
	requireOK(t, cliProcess(t, "master", "add", f.backing, k2))
	gen := readGeneration(t, f.backing)
	before := f.config(t)
	r := p.resume(t)
	assertFailure(t, r, exitFailure, "master key "+f.masterID(t, k2)+" was added after")
	assert.Contains(t, r.stderr, "run coffer rotate again")
	assert.Equal(t, before, f.config(t))
	assert.Equal(t, gen, readGeneration(t, f.backing))
	requireOK(t, cliProcess(t, f.rotateArgs()...))
	requireEveryMasterOpens(t, f.fixture)

	// During the rotation, at its first commit and at its purge: master
	// add refuses and writes nothing; master remove goes through.
	for _, point := range []string{"locked", "purge"} {
		p := startPausedRotate(t, f.fixture, point)
		before := f.config(t)
		k := f.newKey(t, point+".key")
		r := cliProcess(t, "master", "add", f.backing, k)
		assertFailure(t, r, exitFailure, "a rotation is in progress")
		assert.Equal(t, before, f.config(t), "refused master add at %s wrote the config", point)
		if point == "purge" {
			requireOK(t, cliProcess(t, "master", "remove", f.backing, f.masterID(t, k2)))
		}
		requireOK(t, p.resume(t))
		requireOK(t, cliProcess(t, "master", "add", f.backing, k))
		requireEveryMasterOpens(t, f.fixture)
	}
	assert.Len(t, ringKeys(t, f.backing), 1, "every rotation purged")

	// An interrupted rotation holds no lock: a master key added before it
	// resumes gets the resumed rotation's rings.
	for _, kill := range []int{1, 2, 5} {
		r := cliProcessEnv(t, []string{"COFFER_TEST_KILL_POINT=" + strconv.Itoa(kill)},
			f.rotateArgs()...)
		require.Equal(t, -1, r.code, "killed at %d: %s", kill, r.stderr)
		k := f.newKey(t, fmt.Sprintf("kill%d.key", kill))
		requireOK(t, cliProcess(t, "master", "add", f.backing, k))
		requireEveryMasterOpens(t, f.fixture)
		requireOK(t, cliProcess(t, f.rotateArgs()...))
		assert.Len(t, ringKeys(t, f.backing), 1, "killed at %d: resumed rotation purged", kill)
		requireEveryMasterOpens(t, f.fixture)
	}
	tr.check(t)

	// The first master key still mounts and reads everything.
	f.unmount(t)
	requireOK(t, f.mount(t, "--master", first))
	tr.check(t)
}

// TestRotateMasterChurn runs rounds of concurrent coffer rotate, master add
// and master remove processes on one volume, with random choices (the seed
// is logged). Each may succeed or refuse cleanly; after each round every
// listed master key must open the volume.
func TestRotateMasterChurn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	first := f.masterID(t, f.keyURI())
	n := 0
	for round := range 6 {
		var args [][]string
		for range 1 + rng.IntN(2) {
			args = append(args, []string{"rotate", f.backing})
		}
		for range 1 + rng.IntN(2) {
			n++
			args = append(args, []string{"master", "add", f.backing,
				f.newKey(t, fmt.Sprintf("churn%d.key", n))})
		}
		if list := f.masters(t); len(list) > 1 && rng.IntN(2) == 0 {
			m := list[rng.IntN(len(list))]
			if m.ID != first {
				args = append(args, []string{"master", "remove", f.backing, m.ID})
			}
		}
		rng.Shuffle(len(args), func(i, j int) { args[i], args[j] = args[j], args[i] })
		results := make([]result, len(args))
		var wg sync.WaitGroup
		for i, a := range args {
			wg.Go(func() {
				// A master add refused by a running rotation is tried
				// again, as an admin would, so that some land between
				// and inside rotations.
				for range 3 {
					results[i] = cliProcess(t, a...)
					if a[0] != "master" || a[1] != "add" || results[i].code == exitOK {
						break
					}
				}
			})
		}
		wg.Wait()
		for i, r := range results {
			if r.code != exitOK {
				assertFailure(t, r, exitFailure, "") // a clean refusal, one error line
			}
			t.Logf("round %d: %v: exit %d %s", round, args[i][:2], r.code, r.stderr)
		}
		requireEveryMasterOpens(t, f)
		if len(f.masters(t)) < 3 { // something for the next round to remove
			n++
			requireOK(t, cliProcess(t, "master", "add", f.backing,
				f.newKey(t, fmt.Sprintf("churn%d.key", n))))
		}
	}
	requireOK(t, cliProcess(t, "rotate", f.backing))
	assert.Len(t, ringKeys(t, f.backing), 1)
	requireEveryMasterOpens(t, f)
}

func readGeneration(t *testing.T, backing string) uint64 {
	t.Helper()
	cfg, err := keys.ReadConfig(backing)
	require.NoError(t, err)
	return cfg.Ring.Generation
}

// cliProcessEnv is cliProcess with extra environment variables.
func cliProcessEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), mainEnv+"=1"), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}
