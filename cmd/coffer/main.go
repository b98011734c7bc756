// Command coffer creates, mounts and inspects coffer volumes: directories
// whose files are stored encrypted in a backing directory and served in the
// clear through a FUSE mount.
//
// Run "coffer --help" for the commands, docs/cli.md for the full reference.
package main

import (
	"context"
	"errors"
	"io"
	"os"
)

func main() {
	helper := helperNames[helperProgram(os.Args[0])]
	os.Exit(runAs(context.Background(), helper, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runAs(ctx, false, args, stdin, stdout, stderr)
}

// runAs is run for a program that may have been called as a mount helper:
// helper says it was, by its name; the calling form "coffer SOURCE
// MOUNTPOINT -o OPTIONS" of mount.fuse3 is recognised by its arguments. It
// is the one place where errors are printed and turned into exit codes.
func runAs(ctx context.Context, helper bool, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCommand(a)
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	if helper || isHelperCall(root, args) {
		var err error
		if args, err = helperArgs(args); err != nil {
			printError(stderr, err)
			return exitCode(err)
		}
	}
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	printError(stderr, err)
	return exitCode(err)
}

// exitCode maps an error returned by a command to the exit status.
func exitCode(err error) int {
	var usage *usageError
	var damage *damageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &usage):
		return exitUsage
	case errors.As(err, &damage):
		return exitDamaged
	default:
		return exitFailure
	}
}
