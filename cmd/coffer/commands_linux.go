package main

import "github.com/spf13/cobra"

// platformCommands returns the commands that serve a volume through FUSE,
// which only the Linux build has.
func platformCommands(a *app) []*cobra.Command {
	return []*cobra.Command{newMountCommand(a), newUnmountCommand(a), newPathCommand(a),
		newFsckCommand(a), newRotateCommand(a)}
}
