//go:build linux

// Command coffer-bench measures coffer against gocryptfs and go-fuse's
// loopback file system on the same machine, in one run, and checks that every
// file system returns exactly the bytes written to it.
//
// For each backing file system (tmpfs and the ordinary disk) and each round it
// runs the phases WRITE, READ, RANDREAD, UNTAR, CHECKSUM, LS and RM, each
// phase on every file system in turn (the order rotates between rounds), each
// on a fresh foreground mount started by the benchmark after the caches were
// dropped. It records the peak RSS of each mount process and prints medians
// with coffer's speed ratios; in the full run it also writes them into
// docs/benchmarks.md. After the rounds, the ROTATE section times "coffer
// rotate" against "coffer rotate --reencrypt" on one volume of many small
// files per backing (-rotate-files).
//
// Usage:
//
//	coffer-bench [flags]                  run the benchmark
//	coffer-bench -quick                   tiny sizes, one round: a correctness smoke test
//	coffer-bench loopback [-passthrough] BACKING MOUNTPOINT
//	                                      serve go-fuse's loopback (used by the benchmark)
//
// Exit codes: 0 success, 1 failure, 2 usage error, 3 a file system returned
// wrong data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Exit codes of the program.
const (
	exitOK        = 0
	exitFailure   = 1
	exitUsage     = 2
	exitWrongData = 3
)

// stopGrace is how long an interrupted benchmark gets to leave its current
// phase before the cleanup unmounts under it.
const stopGrace = 20 * time.Second

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == loopbackCommand {
		return serveLoopback(args[1:])
	}

	opts, err := parseOptions(args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "coffer-bench: error: %v\n", err)
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	j := newJanitor()
	defer j.cleanup()

	err = runInterruptible(ctx, func() error { return benchmark(ctx, opts, j) })
	return exitCode(err)
}

// runInterruptible runs f; after an interrupt it waits at most stopGrace for
// f to return, so that the deferred cleanup runs even if f is stuck on a
// hung mount.
func runInterruptible(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()

	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-done:
		return err
	case <-time.After(stopGrace):
		return errors.New("interrupted: the running phase did not stop in time")
	}
}

// exitCode reports err on stderr and maps it to the exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(os.Stderr, "coffer-bench: error: %v\n", err)
	var wrong *wrongDataError
	if errors.As(err, &wrong) {
		return exitWrongData
	}
	return exitFailure
}
