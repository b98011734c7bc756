package main

import (
	"os"
	"strconv"
)

// killPoints returns the test hook of the crash tests: with
// COFFER_TEST_KILL_POINT=N in the environment, the Nth call kills the
// process with SIGKILL, as a crash would. Without it, a no-op.
func killPoints() func() {
	n, err := strconv.Atoi(os.Getenv("COFFER_TEST_KILL_POINT"))
	if err != nil || n <= 0 {
		return func() {}
	}
	return func() {
		n--
		if n == 0 {
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				_ = p.Kill()
			}
			select {}
		}
	}
}
