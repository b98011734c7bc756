package main

import (
	"github.com/spf13/cobra"
)

func newRecoveryCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recovery",
		Short: "Make recovery keys",
		Long: `A recovery key is a key pair: its public half becomes one of the volume's
master keys (kind "recovery"), its private half is printed for you to keep
offline. It unlocks the volume when every other master key is lost:
"coffer mount BACKING MOUNTPOINT --recovery-key FILE" (or "-" to type it).
Sealing needs only the public half, which the volume config holds.`,
		Args:                       cobra.ArbitraryArgs,
		RunE:                       runGroup,
		SuggestionsMinimumDistance: 2,
	}
	cmd.AddCommand(newRecoveryNewCommand(a))
	return cmd
}
