//go:build !linux

package main

import (
	"errors"
	"runtime"

	"github.com/spf13/cobra"
)

// errLinuxOnly reports a command that needs FUSE, which coffer supports on
// Linux only.
var errLinuxOnly = errors.New("this command needs FUSE and is available on Linux only")

// platformCommands returns stand-ins for mount and unmount that say why they
// cannot run here, rather than leaving "unknown command" to the user.
func platformCommands(_ *app) []*cobra.Command {
	return []*cobra.Command{linuxOnly("mount"), linuxOnly("unmount"), linuxOnly("path"), linuxOnly("fsck"),
		linuxOnly("rotate")}
}

func linuxOnly(name string) *cobra.Command {
	return &cobra.Command{
		Use:                name,
		Short:              "Linux only: not available in the " + runtime.GOOS + " build",
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return withHints(errLinuxOnly,
				"run coffer "+name+" on a Linux host; the "+runtime.GOOS+" build has "+
					"every other command")
		},
	}
}
