package main

import (
	"github.com/spf13/cobra"
)

func newMasterCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "master",
		Short: "Add, remove and list a volume's master keys",
		Long: `Commands that change which master keys unlock a volume. A volume holds 1 to
32 master keys; the ring is sealed once to each, and any one of them unlocks
it. Adding or removing one needs a master key to unlock the volume (so that
the audit log records it with a MAC); the last one cannot be removed.`,
		Args:                       cobra.ArbitraryArgs,
		RunE:                       runGroup,
		SuggestionsMinimumDistance: 2,
	}
	cmd.AddCommand(newMasterAddCommand(a), newMasterRemoveCommand(a), newMasterListCommand(a))
	return cmd
}
