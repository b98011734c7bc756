//go:build linux

package stress

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/check"
)

// Crash-test writers are this test binary run with childEnv=writer. Each
// drives one file in the mount and keeps a journal in a plain directory,
// one line per event, each written with one write(2) before the next step:
//
//	C                    the file was created, empty
//	B <op>               the op is about to run (Op.String; "save <k>" for savers)
//	E                    the op returned success
//	S <size> <sha256>    an fsync returned success; the file's expected state
//	X <error>            the op failed (the mount died); the writer stops
//
// and prints one byte on standard output per successful op, which the test
// counts to choose when to kill the mount.

// crashKinds are the ops a writer draws: everything that changes data, and
// fsync often.
var crashKinds = map[Kind]bool{Write: true, Append: true, Truncate: true, Allocate: true,
	MmapWrite: true, Fsync: true}

// runWriter is the main function of a crash-test writer.
func runWriter(args []string) int {
	fs := flag.NewFlagSet("writer", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory in the mount")
	name := fs.String("name", "", "file name prefix")
	journal := fs.String("journal", "", "journal file")
	seed := fs.Uint64("seed", 1, "seed")
	saver := fs.Bool("saver", false, "save whole files atomically (write, fsync, rename) instead")
	maxOps := fs.Int("max-ops", 100000, "stop after this many ops")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	j, err := os.OpenFile(*journal, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer j.Close()
	w := &writer{journal: j, progress: bufio.NewWriterSize(os.Stdout, 1)}
	if *saver {
		err = w.save(*dir, *name, *seed, *maxOps)
	} else {
		err = w.ops(*dir, *name, *seed, *maxOps)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type writer struct {
	journal  *os.File
	progress *bufio.Writer
}

func (w *writer) record(format string, args ...any) error {
	_, err := fmt.Fprintf(w.journal, format+"\n", args...)
	return err
}

// done records the end of an op: success, or the failure that stops the
// writer (errStop).
func (w *writer) done(errno syscall.Errno) error {
	if errno != 0 {
		_ = w.record("X %v", errno)
		return errStop
	}
	if err := w.record("E"); err != nil {
		return err
	}
	_ = w.progress.WriteByte('.')
	return w.progress.Flush()
}

// errStop ends a writer whose op failed; it is the expected end once the
// mount is killed.
var errStop = errors.New("stopped")

// ops runs random ops on one file and keeps its expected state in memory.
func (w *writer) ops(dir, name string, seed uint64, maxOps int) error {
	s, err := openSide("mount", dir, name, 1)
	if err != nil {
		_ = w.record("X %v", err)
		return nil // the mount died before the writer began
	}
	if err := w.record("C"); err != nil {
		return err
	}
	var m model
	g := newGenerator(seed, 1, 2<<20)
	for range maxOps {
		o := g.next(func(int) int64 { return int64(len(m)) })
		if !crashKinds[o.Kind] {
			continue
		}
		if o.Kind == MmapWrite {
			o.Arg = 1 // msync: a mapped write counts once it is synced
		}
		data := o.data()
		if err := w.record("B %s", o); err != nil {
			return err
		}
		r := applyFaulting(s, o, data)
		if err := w.done(r.err); err != nil {
			return ignoreStop(err)
		}
		m.apply(o, data)
		if o.Kind == Fsync {
			sum := sha256.Sum256(m)
			if err := w.record("S %d %s", len(m), hex.EncodeToString(sum[:])); err != nil {
				return err
			}
		}
	}
	return nil
}

// save writes version k of a file to a temporary name, fsyncs it and
// renames it over the file, as editors and config tools do.
func (w *writer) save(dir, name string, seed uint64, maxOps int) error {
	for k := range maxOps {
		if err := w.record("B save %d", k); err != nil {
			return err
		}
		err := saveAtomic(dir, name, savedVersion(seed, k))
		if err := w.done(errnoOf(err)); err != nil {
			return ignoreStop(err)
		}
	}
	return nil
}

// applyFaulting is s.apply, with a fault on a mapped page (SIGBUS once the
// mount died under the mapping) turned into EFAULT instead of a crash.
func applyFaulting(s *side, o Op, data []byte) (r result) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if recover() != nil {
			r = result{err: syscall.EFAULT}
		}
	}()
	return s.apply(o, data)
}

func ignoreStop(err error) error {
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

func saveAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// savedVersion is the content of version k of a saver's file: 100 bytes to
// 20 KB, so that versions end in different blocks.
func savedVersion(seed uint64, k int) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(k)))
	b := make([]byte, 100+r.IntN(20000))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, fmt.Sprintf("version %d\n", k))
	return b
}

// model is the expected contents of a file.
type model []byte

// apply changes the model as o changes the file.
func (m *model) apply(o Op, data []byte) {
	switch o.Kind {
	case Write:
		m.writeAt(data, o.Off)
	case Append:
		m.writeAt(data, int64(len(*m)))
	case Truncate:
		m.resize(o.Off)
	case Allocate:
		m.resize(max(int64(len(*m)), o.Off+o.Len))
	case MmapWrite:
		if size := int64(len(*m)); size > 0 {
			off := o.Off % size
			end := min(off+o.Len, size)
			copy((*m)[off:end], data[:end-off])
		}
	}
}

func (m *model) writeAt(data []byte, off int64) {
	m.resize(max(int64(len(*m)), off+int64(len(data))))
	copy((*m)[off:], data)
}

func (m *model) resize(n int64) {
	if n <= int64(len(*m)) {
		*m = (*m)[:n]
		return
	}
	*m = append(*m, make([]byte, n-int64(len(*m)))...)
}

// touched returns the blocks an op on a file of size size may rewrite: from
// the first block it writes, or the old end of the file if it fills a gap,
// to the last one.
func touched(o Op, size int64) (lo, hi int64, ok bool) {
	switch o.Kind {
	case Write, Allocate:
		return min(o.Off, size) / BlockSize, (o.Off + o.Len - 1) / BlockSize, true
	case Append:
		return size / BlockSize, (size + o.Len - 1) / BlockSize, true
	case Truncate:
		return min(o.Off, size) / BlockSize, max(o.Off, size) / BlockSize, true
	case MmapWrite:
		if size == 0 {
			return 0, 0, false
		}
		off := o.Off % size
		return off / BlockSize, (min(off+o.Len, size) - 1) / BlockSize, true
	}
	return 0, 0, false
}

// journal is a parsed writer journal.
type journal struct {
	acked    model // the state after every op that returned success
	synced   model // the state at the last fsync that returned success
	inFlight *Op   // an op that began and never returned, or failed
	before   model // the state before inFlight
	ops      int   // ops that returned success
	fsyncs   int
	saves    []int // for savers: versions begun, the last may be in flight
	saved    int   // for savers: the last version renamed into place, -1 if none
	created  bool  // the file was created
}

// parseJournal replays a writer's journal; it checks every fsync record
// against its own replay, so a writer and the checker agree on the model.
func parseJournal(path string) (*journal, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	j := &journal{saved: -1}
	var begun *Op
	for i, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		if err := j.event(line, &begun); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
	}
	if begun != nil {
		j.inFlight, j.before = begun, j.acked
	}
	return j, nil
}

// event applies one journal line.
func (j *journal) event(line string, begun **Op) error {
	tag, rest, _ := strings.Cut(line, " ")
	switch {
	case line == "":
	case tag == "C":
		j.created = true
	case tag == "B" && strings.HasPrefix(rest, "save "):
		k, err := strconv.Atoi(strings.TrimPrefix(rest, "save "))
		j.saves = append(j.saves, k)
		*begun = &Op{Kind: Rename, Seed: uint64(k)}
		return err
	case tag == "B":
		o, err := ParseOp(rest)
		*begun = &o
		return err
	case tag == "E" && *begun != nil:
		if (*begun).Kind == Rename {
			j.saved = int((*begun).Seed)
		} else {
			next := append(model(nil), j.acked...)
			next.apply(**begun, (*begun).data())
			j.acked = next
		}
		j.ops++
		*begun = nil
	case tag == "S":
		sum := sha256.Sum256(j.acked)
		if want := fmt.Sprintf("%d %s", len(j.acked), hex.EncodeToString(sum[:])); rest != want {
			return fmt.Errorf("fsync record %q, the replay gives %q", rest, want)
		}
		j.synced = j.acked
		j.fsyncs++
	case tag == "X":
		// The op in *begun failed; it is still in flight for the checker,
		// since the daemon may have done it before dying.
	default:
		return fmt.Errorf("unexpected journal line %q", line)
	}
	return nil
}

// crashStats adds up what the crash iterations saw.
type crashStats struct {
	seeds, ops, fsyncs, inFlight, eio, newState, oldState, saves int
	lostSynced                                                   int // EIO blocks that held fsynced data
	restored                                                     int // cut overwrites fsck found restorable
	fsckNamed                                                    int // blocks fsck named that read EIO
}

// count adds a journal's numbers.
func (s *crashStats) count(j *journal) {
	s.ops += j.ops
	s.fsyncs += j.fsyncs
	if j.inFlight != nil {
		s.inFlight++
	}
}

// TestCrashConsistency kills coffer mount --foreground with SIGKILL while
// writer processes hammer files in the mount (writes of 1 B to 300 KiB
// across block boundaries, appends, truncation, fallocate, msynced mmap
// writes, fsyncs, and atomic saves by rename), at a random point for each
// seed; it detaches the dead mount with fusermount3 -u -z, mounts again and
// checks every file against the writers' journals.
//
// What it asserts is stronger than "every fsynced byte is there": the
// writeback cache is off (fs package documentation), so every write(2),
// truncation and msync that returned success reached the backing file
// before it returned, and killing the daemon (unlike a power cut) loses
// nothing the backing file system holds. So every file opens, and every
// block reads back as the writer's acknowledged state, except blocks the one
// op in flight at the kill may have rewritten: those may hold the old or the
// new contents or fail with EIO, and EIO only if the block is the file's
// last one before or after that op, or held nothing that was fsynced: a
// block rewritten in place and cut by the kill reads as its old contents,
// from the file's undo record (TestTornOverwrite shows it
// deterministically). Files of earlier seeds are checked again after later
// crashes. A saved file is always a whole version, never EIO.
//
// After each kill, before mounting again, it runs coffer fsck --json on the
// backing directory, and checks that the blocks fsck names, except those it
// finds restorable from the undo record (which the mount reads as their old
// version), are exactly the blocks of this seed's files that read EIO.
func TestCrashConsistency(t *testing.T) {
	v := newVolume(t, "")
	journals := t.TempDir()
	base := *exerciserSeed
	if base == 0 {
		base = uint64(time.Now().UnixNano()) & (1<<40 - 1)
	}
	seeds := scale(20, 500)
	t.Logf("crash seeds %d..%d (rerun with -args -stress.seed=%d)", base, base+uint64(seeds)-1, base)

	var stats crashStats
	var all []crashFile
	for i := range seeds {
		seed := base + uint64(i)
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			files, report := crashRound(t, v, journals, seed)
			checkAllOpen(t, v.mnt)
			checkFsck(t, v, report, fmt.Sprintf("s%d-", seed), &stats)
			// Files of earlier seeds, again: the last seed's after every
			// crash, all of them every 25th (rereading all every time
			// grows with the square of the seeds).
			again := all[max(0, len(all)-len(files)):]
			if i%25 == 24 || i == seeds-1 {
				again = all
			}
			for _, f := range again {
				f.check(t, v, nil)
			}
			for _, f := range files {
				f.check(t, v, &stats)
			}
			all = append(all, files...)
		})
		if !ok {
			t.Fatalf("crash seed %d failed; rerun it alone with -run 'TestCrashConsistency' -args -stress.seed=%d",
				seed, seed)
		}
		stats.seeds++
	}
	t.Logf("crash: %d seeds, %d acknowledged ops, %d fsyncs, %d atomic saves, %d ops in flight at the kill: "+
		"%d blocks read back old, %d new, %d EIO (all within the op in flight; %d of them held fsynced data); "+
		"fsck found %d cut overwrites restorable and named all %d EIO blocks",
		stats.seeds, stats.ops, stats.fsyncs, stats.saves, stats.inFlight, stats.oldState, stats.newState,
		stats.eio, stats.lostSynced, stats.restored, stats.fsckNamed)
}

// crashFile is a file one writer wrote, with its journal.
type crashFile struct {
	name    string
	journal string
	saver   bool
	seed    uint64
}

// crashRound starts the writers of one seed, kills the mount once they
// have done a random number of ops, runs coffer fsck and mounts again.
func crashRound(t *testing.T, v *volume, dir string, seed uint64) ([]crashFile, *check.Report) {
	r := rand.New(rand.NewPCG(seed, 0xc4a54))
	var files []crashFile
	var cmds []*exec.Cmd
	var progress []io.Reader
	for w := range 4 {
		f := crashFile{name: fmt.Sprintf("s%d-w%d-", seed, w), saver: w == 3, seed: seed*8 + uint64(w)}
		f.journal = filepath.Join(dir, f.name+"journal")
		cmd := exec.Command(os.Args[0], "-dir", v.mnt, "-name", f.name, "-journal", f.journal,
			"-seed", strconv.FormatUint(f.seed, 10), "-saver="+strconv.FormatBool(f.saver))
		cmd.Env = append(os.Environ(), childEnv+"=writer")
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = &bytes.Buffer{}
		require.NoError(t, cmd.Start())
		registerProc(cmd)
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		files, cmds, progress = append(files, f), append(cmds, cmd), append(progress, stdout)
	}

	// Kill after a random number of acknowledged ops, counted as the
	// writers report them; the writers are busy in their next op then.
	killAt := 5 + r.IntN(300)
	ticks := make(chan struct{}, 1024)
	for _, p := range progress {
		go func() {
			buf := make([]byte, 1)
			for {
				if _, err := p.Read(buf); err != nil {
					return
				}
				select {
				case ticks <- struct{}{}:
				default: // past the kill nobody counts; keep draining the pipe
				}
			}
		}()
	}
	waitTicks(t, ticks, killAt)
	v.kill(t)
	for i, cmd := range cmds {
		// A writer ends with status 0 once an op fails.
		if err := waitProc(t, cmd); err != nil {
			t.Errorf("writer %d: %v: %s", i, err, cmd.Stderr)
		}
	}
	detach(t, v.mnt)
	report := fsck(t, v)
	v.mount(t)
	return files, report
}

// fsck runs coffer fsck --json on the volume, which is not mounted.
func fsck(t *testing.T, v *volume) *check.Report {
	t.Helper()
	stdout, stderr, err := tryRun(cofferBin(t), "fsck", "--json", v.backing)
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3) {
		t.Fatalf("coffer fsck: %v\n%s", err, stderr)
	}
	var r check.Report
	require.NoError(t, json.Unmarshal([]byte(stdout), &r), "coffer fsck output: %s", stdout)
	assert.Equal(t, err != nil, r.Damaged(), "exit status 3 if and only if damage is left")
	return &r
}

// checkFsck compares what fsck reported for the files whose names start
// with prefix with the blocks of those files that read EIO in the mount.
func checkFsck(t *testing.T, v *volume, r *check.Report, prefix string, stats *crashStats) {
	t.Helper()
	named := map[string]bool{}
	for _, p := range r.Problems {
		if !strings.HasPrefix(p.Path, prefix) {
			continue
		}
		if p.Repair == check.RepairRestore {
			stats.restored++
			continue
		}
		named[fmt.Sprintf("%s block %d", p.Path, p.Block)] = true
	}
	eio := eioBlocks(t, v.mnt, prefix)
	assert.Equal(t, eio, named, "fsck must name exactly the blocks that read EIO (%s)", prefix)
	stats.fsckNamed += len(eio)
}

// eioBlocks reads every file in dir whose name starts with prefix, block by
// block, and returns those that fail with EIO ("NAME block N"; block -1 if
// the file does not open).
func eioBlocks(t *testing.T, dir, prefix string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
			continue
		}
		fd, err := unix.Open(filepath.Join(dir, e.Name()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			out[e.Name()+" block -1"] = true
			continue
		}
		var st unix.Stat_t
		require.NoError(t, unix.Fstat(fd, &st))
		for b := int64(0); b*BlockSize < st.Size; b++ {
			if r := preadAll(fd, BlockSize, b*BlockSize); r.err == syscall.EIO {
				out[fmt.Sprintf("%s block %d", e.Name(), b)] = true
			}
		}
		unix.Close(fd)
	}
	return out
}

// checkAllOpen checks that every file in dir opens.
func checkAllOpen(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if assert.NoError(t, err, "open after the crash") {
			f.Close()
		}
	}
}

// waitTicks waits until n ticks arrived.
func waitTicks(t *testing.T, ticks <-chan struct{}, n int) {
	t.Helper()
	timeout := time.NewTimer(readyTimeout)
	defer timeout.Stop()
	for seen := 0; seen < n; seen++ {
		select {
		case <-ticks:
		case <-timeout.C:
			t.Fatalf("the writers did only %d ops in %v", seen, readyTimeout)
		}
	}
}

// waitProc waits for a process the test killed or expects to end soon.
func waitProc(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(readyTimeout):
		stack, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stack", cmd.Process.Pid))
		wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", cmd.Process.Pid))
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("%s %s did not exit within %v; it waited in %s:\n%s\n%s", cmd.Path,
			strings.Join(cmd.Args[1:], " "), readyTimeout, wchan, stack, cmd.Stderr)
		return nil
	}
}

// check reads the file back through the mount and compares it with its
// journal. stats is nil when the file is checked again after a later crash.
func (f crashFile) check(t *testing.T, v *volume, stats *crashStats) {
	t.Helper()
	quiet := stats == nil
	if quiet {
		stats = &crashStats{}
	}
	j, err := parseJournal(f.journal)
	require.NoError(t, err)
	if f.saver {
		f.checkSaved(t, v, j, stats)
		return
	}
	path := v.path(f.name + "f0")
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if !j.created && errors.Is(err, unix.ENOENT) {
		return // the mount died while the writer created the file
	}
	require.NoError(t, err, "%s does not open after the crash", f.name)
	defer unix.Close(fd)
	var st unix.Stat_t
	require.NoError(t, unix.Fstat(fd, &st))

	want := j.acked
	var after model
	lo, hi, inFlight := int64(-1), int64(-1), false
	if j.inFlight != nil {
		after = append(model(nil), want...)
		after.apply(*j.inFlight, j.inFlight.data())
		lo, hi, inFlight = touched(*j.inFlight, int64(len(want)))
	}
	ctx := fmt.Sprintf("%s (seed %d; %d acked ops, in flight: %v)", f.name, f.seed, j.ops, j.inFlight)

	minSize, maxSize := int64(len(want)), int64(len(want))
	if inFlight {
		minSize, maxSize = min(minSize, int64(len(after))), max(maxSize, int64(len(after)))+1
	}
	if st.Size < minSize || st.Size > maxSize {
		t.Errorf("%s: size %d, want %d..%d", ctx, st.Size, minSize, maxSize)
		return
	}

	for b := int64(0); b*BlockSize < st.Size; b++ {
		end := min((b+1)*BlockSize, st.Size)
		r := preadAll(fd, end-b*BlockSize, b*BlockSize)
		mayChange := inFlight && b >= lo && b <= hi
		switch {
		case r.err == syscall.EIO && mayChange:
			stats.eio++
			if lostSynced(j, after, b, end) {
				stats.lostSynced++
				t.Errorf("%s: block %d held fsynced data and fails with EIO after the crash: "+
					"an in-place rewrite cut by the kill was not recovered (see TestTornOverwrite)", ctx, b)
			}
		case r.err != 0:
			t.Errorf("%s: block %d: %v", ctx, b, r.err)
		case matches(want, r.data, b*BlockSize):
			if mayChange {
				stats.oldState++
			}
		case mayChange && matches(after, r.data, b*BlockSize):
			stats.newState++
		default:
			t.Errorf("%s: block %d (%d bytes) is neither the acknowledged state nor, if the op in flight "+
				"touches it (blocks %d..%d), its result", ctx, b, len(r.data), lo, hi)
		}
	}
	stats.count(j)
}

// lostSynced reports whether block b (ending at end), which failed with
// EIO, held fsynced data that the op in flight did not mean to change, and
// is not the last block of the file before or after that op.
func lostSynced(j *journal, after model, b, end int64) bool {
	last := func(m model) int64 { return (int64(len(m)) - 1) / BlockSize }
	return b < last(j.acked) && b < last(after) &&
		matches(j.synced, j.acked[b*BlockSize:end], b*BlockSize)
}

// matches reports whether data equals m at off.
func matches(m model, data []byte, off int64) bool {
	return off+int64(len(data)) <= int64(len(m)) && bytes.Equal(m[off:off+int64(len(data))], data)
}

// checkSaved checks an atomically saved file: it is whole and is the last
// version renamed into place, or the one whose rename was in flight.
func (f crashFile) checkSaved(t *testing.T, v *volume, j *journal, stats *crashStats) {
	t.Helper()
	data, err := os.ReadFile(v.path(f.name))
	if j.saved < 0 && errors.Is(err, os.ErrNotExist) {
		return
	}
	require.NoError(t, err, "%s after the crash", f.name)
	ok := j.saved >= 0 && bytes.Equal(data, savedVersion(f.seed, j.saved))
	if !ok && j.inFlight != nil {
		ok = bytes.Equal(data, savedVersion(f.seed, int(j.inFlight.Seed)))
	}
	assert.True(t, ok, "%s: %d bytes, %q..., neither version %d nor the one in flight",
		f.name, len(data), data[:min(len(data), 12)], j.saved)
	stats.saves += len(j.saves)
	stats.count(j)
}

// Backing layout (docs/format.md), for tests that build crash states by
// hand.
const (
	headerSize      = 280
	cipherBlockSize = BlockSize + 40
)

func blockOffset(b int64) int64 { return headerSize + b*cipherBlockSize }

// cipherSize is the backing size of a plaintext size.
func cipherSize(n int64) int64 {
	if n == 0 {
		return 0
	}
	full, rem := n/BlockSize, n%BlockSize
	size := blockOffset(full)
	if rem > 0 {
		size += rem + 40
	}
	return size
}

// TestTornOverwrite builds, by hand, the backing files a kill -9 of the
// mount leaves when it cuts a block rewrite, and checks what the product
// promises: a crash loses at most what was not fsynced.
//
// The kernel copies a pwrite into the page cache page by page and a
// SIGKILL can stop it between two pages, so a rewrite of a block (4136
// bytes, not page aligned) can land in part. TestCrashConsistency sees this
// at random; here it is deterministic. Before the mount overwrites a block
// in place it saves the old bytes in the file's undo record: the cut block
// must read as its old contents, and coffer fsck must say so.
func TestTornOverwrite(t *testing.T) {
	v := newVolume(t, "")
	const blocks = 97
	old := pattern(1, blocks*BlockSize)
	writeSync(t, v.path("f"), old, 0)
	v.unmount(t)
	bf := backingFile(t, v, "f")
	rel, err := filepath.Rel(v.backing, bf)
	require.NoError(t, err)
	oldBacking := readFile(t, bf)

	for _, tt := range []struct {
		name  string
		block int64
		cut   int64
	}{
		// Block 1 holds one page boundary; block 95 starts 16 bytes
		// before one and holds two.
		{"block 1, at its page boundary", 1, (blockOffset(1)/4096 + 1) * 4096},
		{"block 95, at its second page boundary", 95, (blockOffset(95)/4096 + 2) * 4096},
	} {
		t.Run("overwrite of a middle block cut: "+tt.name, func(t *testing.T) {
			// The rewrite of the block (fsynced before) stops at a page
			// boundary inside it: the new ciphertext up to there, the old
			// after.
			b := tt.block
			require.Less(t, tt.cut, blockOffset(b+1))
			require.NoError(t, os.WriteFile(bf, oldBacking, 0o600))
			v.mount(t)
			// A kill leaves the file open and its undo record on disk;
			// a close would remove the record. Keep a copy of it taken
			// while the file is open, and put it back after the unmount.
			f, err := os.OpenFile(v.path("f"), os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteAt(pattern(2, BlockSize), b*BlockSize)
			require.NoError(t, err)
			require.NoError(t, f.Sync())
			undoDir := filepath.Join(v.backing, ".coffer", "undo")
			records, err := os.ReadDir(undoDir)
			require.NoError(t, err)
			require.Len(t, records, 1)
			recPath := filepath.Join(undoDir, records[0].Name())
			rec := readFile(t, recPath)
			require.NoError(t, f.Close())
			v.unmount(t)
			newBacking := readFile(t, bf)

			torn := append(append([]byte(nil), newBacking[:tt.cut]...), oldBacking[tt.cut:]...)
			require.NoError(t, os.WriteFile(bf, torn, 0o600))
			require.NoError(t, os.WriteFile(recPath, rec, 0o600))
			r := fsck(t, v)
			require.Len(t, r.Problems, 1)
			assert.Equal(t, check.Problem{Backing: rel, Path: "f", Block: b, Kind: check.KindBlock,
				Detail: r.Problems[0].Detail, Repair: check.RepairRestore}, r.Problems[0])

			v.mount(t)
			defer v.unmount(t)
			got := readBlocks(t, v.path("f"), blocks)
			for i := range got {
				assert.Equal(t, old[i*BlockSize:(i+1)*BlockSize], got[i],
					"block %d: the cut block reads as its last complete version, the others as they were", i)
			}
			assert.NotEmpty(t, v.warnings("undo record"), "a warning names the restored block")
			assert.Equal(t, oldBacking[blockOffset(b):blockOffset(b+1)],
				readFile(t, bf)[blockOffset(b):blockOffset(b+1)], "the old block is written back")
		})
	}

	t.Run("truncation cut before the new last block is rewritten", func(t *testing.T) {
		// Truncating to 1.5 blocks cuts the backing file, then rewrites
		// block 1 shorter. Killed between the two, block 1 is cut: the
		// design accepts this torn last block, which must fail with EIO
		// for that block only, and which fsck names and cuts off.
		require.NoError(t, os.WriteFile(bf, oldBacking[:cipherSize(BlockSize+BlockSize/2)], 0o600))
		r := fsck(t, v)
		require.Len(t, r.Problems, 1)
		assert.Equal(t, check.Problem{Backing: rel, Path: "f", Block: 1, Kind: check.KindBlock,
			Detail: r.Problems[0].Detail, Repair: check.RepairTruncate}, r.Problems[0])

		v.mount(t)
		defer v.unmount(t)
		fd, err := unix.Open(v.path("f"), unix.O_RDONLY, 0)
		require.NoError(t, err)
		defer unix.Close(fd)
		r0 := preadAll(fd, BlockSize, 0)
		assert.Zero(t, r0.err)
		assert.Equal(t, old[:BlockSize], r0.data, "block 0")
		r1 := preadAll(fd, BlockSize, BlockSize)
		assert.Equal(t, syscall.EIO, r1.err, "the torn last block")
	})
}

// backingFile returns the backing file of name in v, as coffer path
// encrypt maps it (names may be encrypted). v must not be mounted.
func backingFile(t *testing.T, v *volume, name string) string {
	t.Helper()
	out := run(t, cofferBin(t), "path", "encrypt", v.backing, "/"+name, "--master", "file://"+v.key)
	return strings.TrimSuffix(out, "\n")
}

// pattern returns n pseudo-random bytes for seed.
func pattern(seed uint64, n int) []byte {
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// writeSync writes data at off into path, creating it, and fsyncs it.
func writeSync(t testing.TB, path string, data []byte, off int64) {
	t.Helper()
	require.NoError(t, writeFile(path, data, off))
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// readBlocks reads n blocks of path one by one; a block that fails reads
// as nil.
func readBlocks(t testing.TB, path string, n int) [][]byte {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	out := make([][]byte, n)
	for b := range out {
		if r := preadAll(fd, BlockSize, int64(b)*BlockSize); r.err == 0 {
			out[b] = r.data
		}
	}
	return out
}
