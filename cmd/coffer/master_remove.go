package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/keys"
)

type masterRemoveOptions struct {
	backing string
	id      string
}

func newMasterRemoveCommand(a *app) *cobra.Command {
	var opts masterRemoveOptions
	cmd := &cobra.Command{
		Use:   "remove BACKING ID",
		Short: "Remove a master key from a volume",
		Long: `Remove the master key ID (as "coffer master list" shows it) and its sealed copy
of the ring from BACKING/.coffer/volume.json. No key is needed.

The last master key cannot be removed: the volume could no longer be
unlocked. There is no option to force it. A mount that is running keeps
working (it holds the ring); the next mount cannot use the removed key.

Removing a master key does not change the ring: whoever copied the volume
config earlier can still open that copy with the removed key. After a key
is compromised, see docs/recovery.md.`,
		Example: `  coffer master remove /srv/app.enc 1a2b3c4d`,
		Args:    exactArgs("BACKING", "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing, opts.id = args[0], args[1]
			return runMasterRemove(cmd.Context(), a, opts)
		},
	}
	return cmd
}

// runMasterRemove removes one master key.
func runMasterRemove(_ context.Context, a *app, opts masterRemoveOptions) error {
	if _, err := readConfig(opts.backing); err != nil {
		return err
	}
	removed, err := keys.RemoveMaster(opts.backing, opts.id)
	switch {
	case errors.Is(err, keys.ErrLastMaster):
		return withHints(err, "add another master key first: coffer master add "+
			shellQuote(opts.backing)+" URI")
	case errors.Is(err, keys.ErrNoMaster):
		return withHints(err, "'coffer master list "+shellQuote(opts.backing)+"' shows the IDs")
	case err != nil:
		return err
	}
	a.log.Info().Str("backing", opts.backing).Str("master", removed.ID).Msg("master key removed")
	fmt.Fprintf(a.stdout, "removed master key %s (%s %s)\n", removed.ID, removed.Kind,
		keys.RedactURI(removed.URI))
	return nil
}
