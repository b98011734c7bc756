//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// gocryptfsTarget is gocryptfs with its default settings (AES-256-GCM
// content encryption, encrypted names), unlocked with a password file.
type gocryptfsTarget struct {
	bin      string
	passfile string
}

var _ target = (*gocryptfsTarget)(nil)

// newGocryptfsTarget writes a random password to a file in secrets.
func newGocryptfsTarget(bin, secrets string) (*gocryptfsTarget, error) {
	pass := filepath.Join(secrets, "gocryptfs.pass")
	if err := os.WriteFile(pass, []byte(rand.Text()+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("failed to write gocryptfs password file: %w", err)
	}
	return &gocryptfsTarget{bin: bin, passfile: pass}, nil
}

func (t *gocryptfsTarget) name() string { return targetGocryptfs }

func (t *gocryptfsTarget) initBacking(ctx context.Context, backing string) error {
	return runTool(ctx, t.bin, "-init", "-q", "-passfile", t.passfile, backing)
}

func (t *gocryptfsTarget) mountCommand(backing, mnt, profile string) *exec.Cmd {
	args := []string{"-f", "-q", "-passfile", t.passfile}
	if profile != "" {
		args = append(args, "-cpuprofile", profile)
	}
	return exec.Command(t.bin, append(args, backing, mnt)...)
}
