//go:build linux

package main

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// machine describes where and with what a run happened.
type machine struct {
	date      time.Time
	cpus      int
	cpuModel  string
	memory    string
	kernel    string
	goVersion string
	goFuse    string // go-fuse version this program and coffer build with
	gocryptfs string // "gocryptfs -version"
	coffer    string // "coffer version", first line
	backings  map[string]string
	dropped   bool // whether the page cache was dropped between phases

	pageReporting pageReporting
}

const goFuseModule = "github.com/hanwen/go-fuse/v2"

// describeMachine collects the machine description; what cannot be found
// reads "unknown".
func describeMachine(ctx context.Context, opts *options, backingDirs map[string]string) machine {
	m := machine{
		date:      time.Now().UTC(),
		cpus:      runtime.NumCPU(),
		cpuModel:  procField("/proc/cpuinfo", "model name"),
		memory:    memTotal(),
		kernel:    kernelRelease(),
		goVersion: runtime.Version(),
		goFuse:    moduleVersion(goFuseModule),
		gocryptfs: "not used",
		coffer:    "not used",
		backings:  map[string]string{},
		dropped:   canDrop(),
	}
	if opts.gocryptfsBin != "" && slices.Contains(opts.targets, targetGocryptfs) {
		m.gocryptfs = firstLine(ctx, opts.gocryptfsBin, "-version")
	}
	if opts.cofferBin != "" && slices.Contains(opts.targets, targetCoffer) {
		m.coffer = firstLine(ctx, opts.cofferBin, "version") + " " + binaryInfo(opts.cofferBin)
	}
	for kind, dir := range backingDirs {
		m.backings[kind] = describeBacking(dir)
	}
	return m
}

// procField returns the value of the first "key : value" line of a /proc
// file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// memTotal returns the machine's memory in GiB.
func memTotal() string {
	kb, err := strconv.ParseInt(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 10, 64)
	if err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
}

// kernelRelease returns uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// moduleVersion returns the version of a module built into this program.
func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range info.Deps {
		if d.Path == path {
			return d.Version
		}
	}
	return "unknown"
}

// binaryInfo returns the Go and go-fuse versions a Go binary was built
// with.
func binaryInfo(path string) string {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return "(unknown build)"
	}
	fuse := "unknown"
	for _, d := range info.Deps {
		if d.Path == goFuseModule {
			fuse = d.Version
		}
	}
	return fmt.Sprintf("(%s, go-fuse %s)", info.GoVersion, fuse)
}

// firstLine returns the first line a command prints.
func firstLine(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// describeBacking names the file system a backing directory is on, with its
// mount options.
func describeBacking(dir string) string {
	m, err := mountOf(dir)
	if err != nil {
		return dir
	}
	return fmt.Sprintf("%s: %s on %s (%s)", dir, m.fsType, m.source, m.options)
}

// loadAverage returns the 1-minute load average.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
