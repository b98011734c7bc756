//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
)

// loopbackTarget is go-fuse's loopback file system served by this program's
// loopback command: no encryption, so it costs only what FUSE and go-fuse
// cost. With kernel passthrough off it is the floor for any file system that
// must see every read and write; with passthrough on it is for reference.
type loopbackTarget struct {
	self        string
	passthrough bool
}

var _ target = (*loopbackTarget)(nil)

func newLoopbackTarget(passthrough bool) (*loopbackTarget, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("failed to find the coffer-bench executable: %w", err)
	}
	return &loopbackTarget{self: self, passthrough: passthrough}, nil
}

func (t *loopbackTarget) name() string {
	if t.passthrough {
		return targetPassthrough
	}
	return targetLoopback
}

func (t *loopbackTarget) initBacking(context.Context, string) error { return nil }

func (t *loopbackTarget) mountCommand(backing, mnt, profile string) *exec.Cmd {
	args := []string{loopbackCommand}
	if t.passthrough {
		args = append(args, "-passthrough")
	}
	if profile != "" {
		args = append(args, "-cpuprofile", profile)
	}
	return exec.Command(t.self, append(args, backing, mnt)...)
}
