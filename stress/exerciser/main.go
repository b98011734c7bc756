//go:build linux

// Command exerciser drives a seeded random sequence of file operations on a
// file system under test and on a reference directory, compares them after
// every operation and, on a mismatch, prints the seed and a minimal
// operation log. Run it with -h for the flags; see package
// github.com/cofferfs/coffer/stress and docs/testing.md.
package main

import (
	"os"

	"github.com/cofferfs/coffer/stress"
)

func main() {
	os.Exit(stress.Main(os.Args[1:], os.Stdout, os.Stderr))
}
