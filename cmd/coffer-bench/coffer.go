//go:build linux

package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// cofferTarget is coffer, driven through its command line as a user would:
// a key file master key, "coffer init", and "coffer mount --foreground".
type cofferTarget struct {
	label     string // targetCoffer, or coffer-NAME for -coffer-builds
	bin       string
	masterURI string
	initArgs  []string // extra "coffer init" flags
}

var _ target = (*cofferTarget)(nil)

// newCofferTarget creates the master key file in secrets. With profiling it
// checks that "coffer mount" takes --cpuprofile (a hidden flag: cobra
// accepts it next to --help only if it exists).
func newCofferTarget(ctx context.Context, label, bin, secrets string, profiling bool,
	initArgs ...string) (*cofferTarget, error) {
	if profiling {
		err := exec.CommandContext(ctx, bin, "mount", "--cpuprofile=/dev/null", "--help").Run()
		if err != nil {
			return nil, fmt.Errorf("-cpuprofile: %s mount does not take --cpuprofile (%v)", bin, err)
		}
	}

	uri := "file://" + filepath.Join(secrets, label+"-master.key")
	if err := runTool(ctx, bin, "keys", "create", uri); err != nil {
		return nil, err
	}
	return &cofferTarget{label: label, bin: bin, masterURI: uri, initArgs: initArgs}, nil
}

func (t *cofferTarget) name() string { return t.label }

func (t *cofferTarget) initBacking(ctx context.Context, backing string) error {
	args := append([]string{"init", backing, "--master", t.masterURI}, t.initArgs...)
	return runTool(ctx, t.bin, args...)
}

func (t *cofferTarget) mountCommand(backing, mnt, profile string) *exec.Cmd {
	args := []string{"mount", "--foreground"}
	if profile != "" {
		args = append(args, "--cpuprofile", profile)
	}
	return exec.Command(t.bin, append(args, backing, mnt)...)
}
