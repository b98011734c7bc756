//go:build linux

package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Names of the file systems under test.
const (
	targetCoffer      = "coffer"                 // names encrypted, the default
	targetCofferPlain = "coffer-plaintext-names" // coffer init --plaintext-names
	targetGocryptfs   = "gocryptfs"
	targetLoopback    = "loopback"    // go-fuse loopback, kernel passthrough off: the FUSE floor
	targetPassthrough = "loopback-pt" // the same with kernel passthrough on, for reference
)

// target is a file system under test.
type target interface {
	// name returns the name used in the report.
	name() string

	// initBacking prepares the empty directory backing for mounting.
	initBacking(ctx context.Context, backing string) error

	// mountCommand returns a command that mounts backing on mnt and serves
	// it in the foreground until unmounted. If profile is not "", the
	// daemon writes its CPU profile there.
	mountCommand(backing, mnt, profile string) *exec.Cmd
}

// newTargets creates the targets opts names; secrets is a private
// directory for their key and password files.
func newTargets(ctx context.Context, opts *options, secrets string) ([]target, error) {
	var out []target
	for _, name := range opts.targets {
		var t target
		var err error
		switch build, isBuild := opts.cofferBuilds[name]; {
		case isBuild:
			t, err = newCofferTarget(ctx, name, build, secrets, opts.cpuprofile != "")
		case name == targetCoffer:
			t, err = newCofferTarget(ctx, name, opts.cofferBin, secrets, opts.cpuprofile != "")
		case name == targetCofferPlain:
			t, err = newCofferTarget(ctx, name, opts.cofferBin, secrets, opts.cpuprofile != "",
				"--plaintext-names")
		case name == targetGocryptfs:
			t, err = newGocryptfsTarget(opts.gocryptfsBin, secrets)
		case name == targetLoopback:
			t, err = newLoopbackTarget(false)
		case name == targetPassthrough:
			t, err = newLoopbackTarget(true)
		default:
			err = fmt.Errorf("unknown file system %q", name)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// runTool runs a setup command and returns its error with its output.
func runTool(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("failed to run %s %s: %w: %s", name, strings.Join(args, " "), err,
			strings.TrimSpace(string(out)))
	}
	return nil
}
