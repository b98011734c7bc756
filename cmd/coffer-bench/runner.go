//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Backing kinds.
const (
	backingTmpfs = "tmpfs"
	backingDisk  = "disk"
)

// runner runs the phases and collects the results.
type runner struct {
	opts    *options
	j       *janitor
	targets []target
	data    *dataSet
	res     *results
}

// benchmark runs the whole benchmark and reports it.
func benchmark(ctx context.Context, opts *options, j *janitor) error {
	j.setKeep(opts.keep)
	if !canDrop() {
		warnf("cannot write %s (not root): phases start with a warm backing page cache", dropCachesPath)
	}
	if opts.cpuprofile != "" {
		if err := os.MkdirAll(opts.cpuprofile, 0o755); err != nil {
			return fmt.Errorf("failed to create profile directory: %w", err)
		}
	}

	work, err := makeWorkDirs(opts, j)
	if err != nil {
		return err
	}
	secrets := filepath.Join(work[backingTmpfs], "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		return fmt.Errorf("failed to create secrets directory: %w", err)
	}
	targets, err := newTargets(ctx, opts, secrets)
	if err != nil {
		return err
	}
	data, err := makeData(opts, work[backingTmpfs])
	if err != nil {
		return err
	}

	r := &runner{opts: opts, j: j, targets: targets, data: data, res: newResults()}
	mach := describeMachine(ctx, opts, backingDirs(opts, work))
	if !opts.quick && !opts.keepPageReporting {
		var restore func() error
		mach.pageReporting, restore = pausePageReporting(pageReportingOrderPath)
		if restore != nil {
			j.addUndo(restore)
		}
		if mach.pageReporting.paused {
			if mach.pageReporting.touched, err = touchFreeMemory(); err != nil {
				warnf("%v", err)
			}
		}
		if mach.pageReporting.present && !mach.pageReporting.paused {
			warnf("free page reporting: %s", mach.pageReporting.describe())
		}
	} else {
		mach.pageReporting = currentPageReporting(pageReportingOrderPath)
	}
	start := time.Now()
	for round := 1; round <= opts.rounds; round++ {
		for _, b := range opts.backings {
			if err := r.round(ctx, round, b, work[b]); err != nil {
				return fmt.Errorf("round %d on %s: %w", round, b, err)
			}
		}
	}
	for _, b := range opts.backings {
		if err := r.rotation(ctx, b, work[b]); err != nil {
			return fmt.Errorf("ROTATE on %s: %w", b, err)
		}
	}
	return r.report(mach, time.Since(start))
}

// makeWorkDirs creates a private work directory on tmpfs (always: it holds
// the tarball and the keys) and one on the disk if that backing is used.
func makeWorkDirs(opts *options, j *janitor) (map[string]string, error) {
	work := map[string]string{}
	parents := map[string]string{backingTmpfs: opts.tmpfsDir}
	if slices.Contains(opts.backings, backingDisk) {
		parents[backingDisk] = opts.diskDir
	}
	for kind, parent := range parents {
		dir, err := os.MkdirTemp(parent, "coffer-bench-")
		if err != nil {
			return nil, fmt.Errorf("failed to create work directory in %s: %w", parent, err)
		}
		j.addDir(dir)
		work[kind] = dir
	}
	return work, nil
}

// backingDirs returns the work directories of the backings in use.
func backingDirs(opts *options, work map[string]string) map[string]string {
	out := map[string]string{}
	for _, b := range opts.backings {
		out[b] = work[b]
	}
	return out
}

// makeData builds the tarball and the file patterns.
func makeData(opts *options, dir string) (*dataSet, error) {
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	salt := binary.LittleEndian.Uint64(seed[:8])
	d := &dataSet{seq: newPattern(seed, salt), rand: newPattern(seed, salt+1)}
	if !slices.Contains(opts.phases, phaseUntar) {
		return d, nil
	}

	start := time.Now()
	t, err := makeTarball(opts.tree, filepath.Join(dir, "tree.tar"))
	if err != nil {
		return nil, err
	}
	infof("tarball of %s: %d files, %d directories, %.1f MB in %.1fs", opts.tree, len(t.files), len(t.dirs),
		float64(t.size)/1e6, time.Since(start).Seconds())
	d.tree = t
	return d, nil
}

// fsDirs are the directories of one file system in one round.
type fsDirs struct {
	backing, mnt, log string
}

// round runs every phase on every file system on one backing: phase by
// phase, so that drifting load affects all file systems alike, in an order
// that rotates with the round.
func (r *runner) round(ctx context.Context, round int, backing, work string) error {
	base := filepath.Join(work, fmt.Sprintf("round-%d", round))
	order := rotate(r.targets, round-1)
	dirs := map[string]fsDirs{}
	for _, t := range order {
		d, err := r.prepareFS(ctx, base, t)
		if err != nil {
			return err
		}
		dirs[t.name()] = d
	}

	all := phases()
	for _, name := range r.opts.phases {
		for _, t := range order {
			if err := r.step(ctx, round, backing, t, dirs[t.name()], all[name]); err != nil {
				return fmt.Errorf("%s on %s: %w", name, t.name(), err)
			}
		}
	}

	r.j.removeDir(base, r.opts.keep)
	return nil
}

// rotate returns ts rotated left by n.
func rotate(ts []target, n int) []target {
	n %= len(ts)
	return append(slices.Clone(ts[n:]), ts[:n]...)
}

// prepareFS creates a fresh backing directory and mount point for t.
func (r *runner) prepareFS(ctx context.Context, base string, t target) (fsDirs, error) {
	dir := filepath.Join(base, t.name())
	d := fsDirs{
		backing: filepath.Join(dir, "backing"),
		mnt:     filepath.Join(dir, "mnt"),
		log:     filepath.Join(dir, "daemon.log"),
	}
	for _, p := range []string{d.backing, d.mnt} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return d, fmt.Errorf("failed to create %s: %w", p, err)
		}
	}
	if err := t.initBacking(ctx, d.backing); err != nil {
		return d, err
	}
	return d, nil
}

// step runs one phase on one file system: prepare on a mount of its own,
// then a cold cache, a fresh mount, the measurement and the cleanup.
func (r *runner) step(ctx context.Context, round int, backing string, t target, d fsDirs, p phase) error {
	env := &stepEnv{mnt: d.mnt, opts: r.opts, data: r.data}
	if p.prepare != nil {
		if err := r.onMount(ctx, t, d, "", func(*mountProc) error { return p.prepare(ctx, env) }); err != nil {
			return fmt.Errorf("failed to prepare: %w", err)
		}
	}
	if err := dropCaches(d.backing); err != nil {
		return err
	}

	smp := sample{load: loadAverage()}
	err := r.onMount(ctx, t, d, r.profilePath(round, backing, t, p), func(m *mountProc) error {
		return measureOn(ctx, m, p, env, &smp)
	})
	if err != nil {
		return err
	}

	r.res.add(resultKey{backing: backing, target: t.name(), phase: p.name}, smp)
	infof("round %d %-5s %-8s %-11s %10.4g %-4s  daemon CPU %6.2fs  peak RSS %4d MiB  load %.2f",
		round, backing, p.name, t.name(), smp.value, p.unit, smp.cpu.Seconds(), smp.rss>>20, smp.load)
	return nil
}

// measureOn runs the measurement of p on the mount m and fills in s: the
// result, the daemon's CPU time during it and its peak RSS. Then it runs
// p's cleanup.
func measureOn(ctx context.Context, m *mountProc, p phase, env *stepEnv, s *sample) error {
	cpu0, err := m.cpuTime()
	if err != nil {
		return err
	}
	if s.value, err = p.measure(ctx, env); err != nil {
		return err
	}
	cpu1, err := m.cpuTime()
	if err != nil {
		return err
	}
	s.cpu = cpu1 - cpu0
	if s.rss, err = m.peakRSS(); err != nil {
		return err
	}
	if p.after != nil {
		return p.after(ctx, env)
	}
	return nil
}

// onMount mounts t, runs f and unmounts, even when f fails.
func (r *runner) onMount(ctx context.Context, t target, d fsDirs, profile string, f func(*mountProc) error) error {
	m, err := startMount(ctx, r.j, t.name(), t.mountCommand(d.backing, d.mnt, profile), d.mnt, d.log)
	if err != nil {
		return err
	}
	ferr := f(m)
	if err := m.stop(); err != nil && ferr == nil {
		return err
	}
	return ferr
}

// profilePath returns where the mount daemon of a step writes its CPU
// profile, or "" when not profiling. Every target can profile: coffer,
// gocryptfs and the loopback take a -cpuprofile flag.
func (r *runner) profilePath(round int, backing string, t target, p phase) string {
	if r.opts.cpuprofile == "" {
		return ""
	}
	return filepath.Join(r.opts.cpuprofile, fmt.Sprintf("%s-%s-r%d-%s.pprof", t.name(), backing, round, p.name))
}

// infof prints a progress line on stderr.
func infof(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "coffer-bench: "+format+"\n", args...)
}

// warnf prints a warning on stderr.
func warnf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "coffer-bench: warning: "+format+"\n", args...)
}
