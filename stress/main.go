//go:build linux

package stress

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Exit codes of Main.
const (
	ExitOK       = 0 // no mismatch
	ExitMismatch = 1 // the sides differed, or a worker failed
	ExitUsage    = 2 // bad flags
)

// options are Main's flags.
type options struct {
	Config
	procs  int
	worker int
	replay string
}

const usage = `usage: exerciser -dir DIR -ref DIR [flags]

Runs a seeded random sequence of file operations (writes at random offsets
and sizes, appends, truncation up and down, fallocate, reads, shared mmap
reads and writes with and without msync, fsync, close and reopen, rename)
on files in DIR, the file system under test, and on files in REF, a
reference directory on a trusted file system, and compares results, sizes
and contents after every operation. Several workers (-procs) run at once,
each a process with its own files and seed (seed + worker number). On a
mismatch a worker prints its seed, replays its log to shrink it by delta
debugging and prints the minimal operation log, which -replay runs again.

Exit status: 0 no mismatch, 1 mismatch or failure, 2 usage error.

flags:
`

// Main runs the exerciser with command-line args and returns its exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		fmt.Fprintf(stderr, "exerciser: error: %v\n", err)
		return ExitUsage
	}
	o.Out = stdout
	switch {
	case o.replay != "":
		return o.runReplay(stdout)
	case o.worker >= 0 || o.procs == 1:
		return o.runWorker(max(o.worker, 0), stdout)
	default:
		return o.runWorkers(args, stdout, stderr)
	}
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("exerciser", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Dir, "dir", "", "directory in the file system under test (required)")
	fs.StringVar(&o.Ref, "ref", "", "reference directory on a trusted file system (required)")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of worker 0; 0 picks one from the clock")
	fs.IntVar(&o.Ops, "ops", 20000, "operations in all, shared among the workers")
	fs.IntVar(&o.procs, "procs", 1, "worker processes")
	fs.IntVar(&o.Files, "files", 3, "files per worker")
	fs.Int64Var(&o.MaxSize, "max-size", 4<<20, "largest file size the generator aims for")
	fs.IntVar(&o.FullEvery, "full-every", 1, "compare the touched file whole every N ops")
	fs.IntVar(&o.ShrinkReplays, "shrink-replays", 2000, "most replays to shrink a failure")
	fs.DurationVar(&o.ShrinkTime, "shrink-time", 3*time.Minute, "most time to shrink a failure")
	fs.StringVar(&o.Save, "save", "", "write the minimal log of a failure to this file")
	fs.BoolVar(&o.Keep, "keep", false, "keep the files after a run without mismatch")
	fs.StringVar(&o.replay, "replay", "", "run the operation log in this file instead")
	fs.IntVar(&o.worker, "worker", -1, "run only this worker, as -procs does (internal)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}

	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.Dir == "" || o.Ref == "":
		return nil, errors.New("-dir and -ref are required")
	case o.procs < 1 || o.Files < 1 || o.Ops < 0 || o.MaxSize < 2*MaxWrite:
		return nil, fmt.Errorf("need -procs >= 1, -files >= 1, -ops >= 0, -max-size >= %d", 2*MaxWrite)
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	return o, nil
}

// runWorker runs worker w's share of the ops.
func (o *options) runWorker(w int, stdout io.Writer) int {
	cfg := o.Config
	cfg.Seed += uint64(w)
	cfg.Prefix = fmt.Sprintf("w%d-", w)
	cfg.Ops = o.Ops / o.procs
	if w < o.Ops%o.procs {
		cfg.Ops++
	}
	if cfg.Save != "" && o.procs > 1 {
		cfg.Save += "." + strconv.Itoa(w)
	}

	rep := Run(cfg)
	switch {
	case rep.Err != nil:
		fmt.Fprintf(stdout, "exerciser: seed %d: error: %v\n", cfg.Seed, rep.Err)
		return ExitMismatch
	case rep.Mismatch != nil:
		return ExitMismatch
	}
	fmt.Fprintln(stdout, rep.summary(cfg))
	return ExitOK
}

// runWorkers starts one process per worker, this program again with
// -worker, and waits for all of them.
func (o *options) runWorkers(args []string, stdout, stderr io.Writer) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "exerciser: error: failed to find this program: %v\n", err)
		return ExitMismatch
	}
	fmt.Fprintf(stdout, "exerciser: %d workers, seeds %d to %d, %d ops in all\n",
		o.procs, o.Seed, o.Seed+uint64(o.procs)-1, o.Ops)

	var mu sync.Mutex
	out := &lockedWriter{mu: &mu, w: stdout}
	codes := make([]int, o.procs)
	var wg sync.WaitGroup
	for w := range o.procs {
		// Later flags win: the worker's seed is worker 0's.
		cmd := exec.Command(self, slices.Concat(args, []string{"-worker", strconv.Itoa(w),
			"-seed", strconv.FormatUint(o.Seed, 10)})...)
		cmd.Stdout, cmd.Stderr = out, &lockedWriter{mu: &mu, w: stderr}
		wg.Go(func() { codes[w] = exitCode(cmd.Run()) })
	}
	wg.Wait()

	for w, code := range codes {
		if code != ExitOK {
			fmt.Fprintf(stdout, "exerciser: worker %d (seed %d) failed with exit status %d\n",
				w, o.Seed+uint64(w), code)
			return ExitMismatch
		}
	}
	return ExitOK
}

func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		return ee.ExitCode()
	default:
		return ExitMismatch
	}
}

// runReplay runs an operation log, comparing whole files after every op.
func (o *options) runReplay(stdout io.Writer) int {
	text, err := os.ReadFile(o.replay)
	if err != nil {
		fmt.Fprintf(stdout, "exerciser: error: %v\n", err)
		return ExitMismatch
	}
	ops, err := parseOps(string(text))
	if err != nil {
		fmt.Fprintf(stdout, "exerciser: error: %s: %v\n", o.replay, err)
		return ExitMismatch
	}
	files := 1
	for _, op := range ops {
		files = max(files, op.File+1)
	}
	cfg := o.Config
	cfg.Prefix, cfg.FullEvery = "replay-", 1
	m, err := cfg.replay(ops, files, 0)
	switch {
	case err != nil:
		fmt.Fprintf(stdout, "exerciser: error: %v\n", err)
		return ExitMismatch
	case m != nil:
		fmt.Fprintf(stdout, "exerciser: MISMATCH replaying %s at %v\n", o.replay, m)
		return ExitMismatch
	}
	fmt.Fprintf(stdout, "exerciser: %s: %d ops, no mismatch\n", o.replay, len(ops))
	return ExitOK
}

// lockedWriter serialises writes of several processes' output.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
