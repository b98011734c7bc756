//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// options are the benchmark's settings, from the command line.
type options struct {
	quick  bool
	rounds int

	backings []string // backing kinds: "tmpfs", "disk"
	targets  []string // file systems, in the order of the first round
	phases   []string

	tmpfsDir string // parent of the work directory on tmpfs
	diskDir  string // parent of the work directory on the ordinary disk

	cofferBin    string
	gocryptfsBin string
	// cofferBuilds are other coffer binaries measured alongside, by target
	// name ("coffer-NAME"), to compare changes in one run.
	cofferBuilds map[string]string

	tree         string // directory tarred for UNTAR
	writeSize    int64
	randSize     int64
	randDuration time.Duration

	// rotateFiles is the size of the ROTATE section's volume; 0 skips it.
	rotateFiles int

	cpuprofile string // directory for coffer's per-phase CPU profiles
	out        string // Markdown file to update with the results, "" for none
	keep       bool   // keep the work directories

	// keepPageReporting leaves the kernel's free page reporting on
	// (pagereport.go); -quick never changes it.
	keepPageReporting bool
}

// Default sizes, from issue 7.
const (
	chunkSize       = 128 << 10
	defaultWrite    = 512 << 20
	defaultRandSize = 256 << 20
	defaultRandTime = 20 * time.Second
	defaultRounds   = 3
)

// Sizes of the -quick mode: enough to cross block and chunk boundaries, small
// enough to finish in seconds.
const (
	quickWrite    = 16 << 20
	quickRandSize = 8 << 20
	quickRandTime = time.Second
	quickTreeSub  = "encoding"
)

var (
	allBackings = []string{backingTmpfs, backingDisk}
	allTargets  = []string{targetCoffer, targetCofferPlain, targetGocryptfs, targetLoopback, targetPassthrough}
	allPhases   = []string{phaseWrite, phaseRead, phaseRandRead, phaseUntar, phaseChecksum, phaseLs, phaseRm}
)

const usageHead = `Usage: coffer-bench [flags]
       coffer-bench loopback [-passthrough] BACKING MOUNTPOINT

Benchmarks coffer, gocryptfs and go-fuse's loopback (kernel passthrough off,
and on for reference) on tmpfs and on the ordinary disk, and checks every byte
read back. Run as root: it drops the page cache between phases.

Flags:
`

// parseOptions parses the command line; it returns flag.ErrHelp for -h.
func parseOptions(args []string) (*options, error) {
	o := &options{}
	var backings, targets, phases, builds string
	fs := flag.NewFlagSet("coffer-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	fs.BoolVar(&o.quick, "quick", false, "tiny sizes, one round, tmpfs only, no report file: a smoke test")
	fs.IntVar(&o.rounds, "rounds", defaultRounds, "rounds of every phase on every file system")
	fs.StringVar(&backings, "backings", strings.Join(allBackings, ","), "backing file systems: tmpfs, disk")
	fs.StringVar(&targets, "fs", strings.Join(allTargets, ","), "file systems to measure: "+strings.Join(allTargets, ", "))
	fs.StringVar(&phases, "phases", strings.Join(allPhases, ","), "phases to run: "+strings.Join(allPhases, ", "))
	fs.StringVar(&o.tmpfsDir, "tmpfs-dir", "/dev/shm", "a directory on tmpfs for the tmpfs backing and the tarball")
	fs.StringVar(&o.diskDir, "disk-dir", "/var/tmp", "a directory on the ordinary disk for the disk backing")
	fs.StringVar(&o.cofferBin, "coffer", "", "coffer binary (default: bin/coffer if present, else coffer in PATH)")
	fs.StringVar(&o.gocryptfsBin, "gocryptfs", "gocryptfs", "gocryptfs binary")
	fs.StringVar(&builds, "coffer-builds", "",
		"other coffer binaries to measure too, as NAME=PATH,...; each is reported as coffer-NAME")
	fs.StringVar(&o.tree, "tree", "", "source tree for UNTAR (default: $(go env GOROOT)/src)")
	fs.Int64Var(&o.writeSize, "write-size", defaultWrite, "size of the WRITE/READ file in bytes")
	fs.Int64Var(&o.randSize, "randread-size", defaultRandSize, "size of the RANDREAD file in bytes")
	fs.DurationVar(&o.randDuration, "randread-time", defaultRandTime, "duration of RANDREAD")
	fs.IntVar(&o.rotateFiles, "rotate-files", defaultRotateFiles,
		"small files of the ROTATE section (coffer rotate against rotate --reencrypt); 0 skips it")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write CPU profiles of the mount daemons, one per phase, into this directory")
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", "Markdown file whose results section is replaced (\"\" for none)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directories")
	fs.BoolVar(&o.keepPageReporting, "keep-page-reporting", false,
		"leave the kernel's free page reporting (virtual machines) on; by default a full run pauses it and restores it after")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		o.applyQuick(set)
	}

	if o.quick && !set["backings"] {
		backings = backingTmpfs
	}
	var err error
	if o.backings, err = parseList("backings", backings, allBackings); err != nil {
		return nil, err
	}
	if o.targets, err = parseList("fs", targets, allTargets); err != nil {
		return nil, err
	}
	if o.phases, err = parseList("phases", phases, allPhases); err != nil {
		return nil, err
	}
	if err := o.parseBuilds(builds); err != nil {
		return nil, err
	}
	return o, o.resolve()
}

// applyQuick sets the -quick defaults for every flag not given explicitly.
func (o *options) applyQuick(set map[string]bool) {
	if !set["rounds"] {
		o.rounds = 1
	}
	if !set["write-size"] {
		o.writeSize = quickWrite
	}
	if !set["randread-size"] {
		o.randSize = quickRandSize
	}
	if !set["randread-time"] {
		o.randDuration = quickRandTime
	}
	if !set["out"] {
		o.out = ""
	}
	if !set["rotate-files"] {
		o.rotateFiles = quickRotateFiles
	}
}

// parseList splits a comma-separated list and checks it against known; the
// result keeps the order given.
func parseList(flagName, s string, known []string) ([]string, error) {
	var out []string
	for _, v := range strings.Split(s, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !slices.Contains(known, v) {
			return nil, fmt.Errorf("-%s: unknown value %q (known: %s)", flagName, v, strings.Join(known, ", "))
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-%s: empty list", flagName)
	}
	return out, nil
}

// parseBuilds adds the -coffer-builds binaries as targets.
func (o *options) parseBuilds(s string) error {
	o.cofferBuilds = map[string]string{}
	for _, b := range strings.Split(s, ",") {
		if strings.TrimSpace(b) == "" {
			continue
		}
		name, path, ok := strings.Cut(strings.TrimSpace(b), "=")
		if !ok || name == "" || path == "" || strings.ContainsAny(name, "/ ") {
			return fmt.Errorf("-coffer-builds: want NAME=PATH, got %q", b)
		}
		p, err := lookBinary(path)
		if err != nil {
			return fmt.Errorf("-coffer-builds: %w", err)
		}
		target := targetCoffer + "-" + name
		if _, dup := o.cofferBuilds[target]; dup {
			return fmt.Errorf("-coffer-builds: %s given twice", name)
		}
		o.cofferBuilds[target] = p
		o.targets = append(o.targets, target)
	}
	return nil
}

// resolve checks the sizes and the phase dependencies and finds the
// binaries and the source tree.
func (o *options) resolve() error {
	if o.rounds < 1 {
		return errors.New("-rounds must be at least 1")
	}
	if o.writeSize <= 0 || o.writeSize%chunkSize != 0 {
		return fmt.Errorf("-write-size must be a positive multiple of %d", chunkSize)
	}
	if o.randSize <= 0 || o.randSize%chunkSize != 0 {
		return fmt.Errorf("-randread-size must be a positive multiple of %d", chunkSize)
	}
	if o.rotateFiles < 0 {
		return errors.New("-rotate-files must not be negative")
	}
	if o.randDuration <= 0 {
		return errors.New("-randread-time must be positive")
	}
	if err := checkPhaseOrder(o.phases); err != nil {
		return err
	}
	if err := o.findBinaries(); err != nil {
		return err
	}
	if o.cpuprofile != "" {
		abs, err := filepath.Abs(o.cpuprofile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		o.cpuprofile = abs
	}
	return o.findTree()
}

// phaseNeeds lists, for the phases that read what another phase leaves
// behind, that phase.
var phaseNeeds = map[string]string{
	phaseRead:     phaseWrite,
	phaseChecksum: phaseUntar,
	phaseLs:       phaseUntar,
	phaseRm:       phaseUntar,
}

// checkPhaseOrder checks that every phase comes after the phase it needs.
func checkPhaseOrder(phases []string) error {
	for i, p := range phases {
		need, ok := phaseNeeds[p]
		if ok && !slices.Contains(phases[:i], need) {
			return fmt.Errorf("-phases: %s needs %s before it", p, need)
		}
	}
	return nil
}

// findBinaries locates the coffer and gocryptfs executables the targets
// need.
func (o *options) findBinaries() error {
	if slices.Contains(o.targets, targetCoffer) || slices.Contains(o.targets, targetCofferPlain) {
		if o.cofferBin == "" {
			o.cofferBin = "coffer"
			if _, err := os.Stat("bin/coffer"); err == nil {
				o.cofferBin = "bin/coffer"
			}
		}
		p, err := lookBinary(o.cofferBin)
		if err != nil {
			return fmt.Errorf("failed to find coffer: %w (build it with 'make build' or pass -coffer)", err)
		}
		o.cofferBin = p
	}
	if slices.Contains(o.targets, targetGocryptfs) {
		p, err := lookBinary(o.gocryptfsBin)
		if err != nil {
			return fmt.Errorf("failed to find gocryptfs: %w (install it: apt-get install gocryptfs)", err)
		}
		o.gocryptfsBin = p
	}
	return nil
}

// lookBinary returns the absolute path of an executable named by path or
// found in PATH.
func lookBinary(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", err
	}
	return filepath.Abs(p)
}

// findTree picks the source tree for UNTAR: -tree, or the Go toolchain's
// src (its encoding package in -quick mode).
func (o *options) findTree() error {
	if !slices.Contains(o.phases, phaseUntar) {
		return nil
	}
	if o.tree == "" {
		root, err := goroot()
		if err != nil {
			return err
		}
		o.tree = filepath.Join(root, "src")
		if o.quick {
			o.tree = filepath.Join(o.tree, quickTreeSub)
		}
	}
	st, err := os.Stat(o.tree)
	if err != nil {
		return fmt.Errorf("failed to use source tree: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("failed to use source tree %s: not a directory", o.tree)
	}
	return nil
}

// goroot asks the go command for its GOROOT.
func goroot() (string, error) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("failed to run 'go env GOROOT' (pass -tree DIR): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
