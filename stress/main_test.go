//go:build linux

package stress

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

// childEnv makes the test binary act as a helper process instead of running
// tests: the exerciser ("exerciser"), a crash-test writer ("writer") or
// an overwriter ("overwriter", TestKillDuringOverwrite).
const childEnv = "COFFER_STRESS_CHILD"

// soak selects the long runs of make soak.
var soak = flag.Bool("stress.soak", false, "run the long versions (1 000 000 exerciser ops, many crash seeds)")

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "exerciser":
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	case "writer":
		os.Exit(runWriter(os.Args[1:]))
	case "overwriter":
		os.Exit(runOverwriter(os.Args[1:]))
	}

	// In-process mounts serve requests in this process: keep enough Ps for
	// the server while test goroutines block in system calls on the mount.
	if runtime.GOMAXPROCS(0) < 4 {
		runtime.GOMAXPROCS(4)
	}
	code := m.Run()
	if leaks := leaked(); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "stress: leaked after the tests:\n  %s\n", strings.Join(leaks, "\n  "))
		cleanupLeaks()
		code = 1
	}
	removeBuildDir()
	os.Exit(code)
}

// scale returns short in make test and long in make soak.
func scale(short, long int) int {
	if *soak {
		return long
	}
	return short
}
