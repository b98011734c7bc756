//go:build !linux

package main

// mountsOf returns no mount points: coffer mounts only on Linux.
func mountsOf(string) ([]string, error) { return nil, nil }

type procState int

const (
	procRunning procState = iota
	procStopped
	procGone
)

// processState knows no process states off Linux.
func processState(int) procState { return procRunning }
