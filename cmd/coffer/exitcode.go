package main

import "fmt"

// Exit codes of the coffer command. They are part of the interface that
// scripts rely on: never renumber them, only add new ones.
const (
	// exitOK means the command did what it was asked.
	exitOK = 0
	// exitFailure means the command was well formed but failed at run time:
	// wrong key, missing directory, mount error, and so on.
	exitFailure = 1
	// exitUsage means the command line was wrong: unknown command or flag,
	// wrong number of arguments, malformed value or master-key URI.
	exitUsage = 2
	// exitDamaged means coffer fsck found damage that is left: found
	// without --repair, or that --repair could not repair.
	exitDamaged = 3
)

// exitCodesHelp is appended to the root command's help text.
const exitCodesHelp = `Exit status:
  0  success
  1  runtime failure (wrong key or passphrase, bad directory, mount error, ...)
  2  usage error (unknown command or flag, wrong arguments, malformed URI)
  3  coffer fsck found damage that is left`

// damageError reports that a check found damage that is left.
type damageError struct {
	problems int
}

func (e *damageError) Error() string {
	return fmt.Sprintf("the volume has %d problem(s) left: damaged files, blocks, directory records or names", e.problems)
}
