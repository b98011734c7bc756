package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
)

type masterRemoveOptions struct {
	unlockOptions
	id string
}

func newMasterRemoveCommand(a *app) *cobra.Command {
	var opts masterRemoveOptions
	cmd := &cobra.Command{
		Use:   "remove BACKING ID",
		Short: "Remove a master key from a volume",
		Long: `Remove the master key ID (as "coffer master list" shows it) and its sealed copy
of the ring from BACKING/.coffer/volume.json.

The volume is unlocked first, with any of its master keys (the one --with
names, or the first that works; the key being removed will do), so that
the audit log records the removal under the ring's MAC. The last master key
cannot be removed: the volume could no longer be
unlocked. There is no option to force it. A mount that is running keeps
working (it holds the ring); the next mount cannot use the removed key.

Removing a master key does not change the ring: whoever copied the volume
config earlier can still open that copy with the removed key. After a key
is compromised, see docs/recovery.md.`,
		Example: `  coffer master remove /srv/app.enc 1a2b3c4d
  coffer master remove /srv/app.enc 1a2b3c4d --recovery-key -`,
		Args: exactArgs("BACKING", "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing, opts.id = args[0], args[1]
			return runMasterRemove(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.with, "with", "", "unlock with this master key (ID or URI)")
	f.StringVar(&opts.passphraseFile, "passphrase-file", "",
		"read the passphrase of a passphrase master from this file (mode 0600)")
	opts.masterFlags.add(f)
	return cmd
}

// runMasterRemove removes one master key.
func runMasterRemove(ctx context.Context, a *app, opts masterRemoveOptions) error {
	cfg, err := readConfig(opts.backing)
	if err != nil {
		return err
	}
	if err := checkRemove(cfg, opts.id); err != nil {
		return removeError(opts.backing, err)
	}
	alog, err := openAudit(a, opts.backing, cfg.VolumeID)
	if err != nil {
		return err
	}
	defer closeAudit(a, alog)
	ring, with, err := unlockVolume(ctx, a, cfg, opts.unlockOptions, unlockFailures(ctx, a, alog))
	if err != nil {
		return err
	}
	alog.SetKeys(ring)
	recordRecoveryUse(ctx, a, alog, with)

	removed, err := keys.RemoveMaster(opts.backing, opts.id)
	if err != nil {
		return removeError(opts.backing, err)
	}
	recordAudit(ctx, a, alog, audit.Event{Type: audit.EventMasterRemoved, Master: removed.ID,
		Detail: map[string]string{"kind": removed.Kind, "unlocked_with": with.ID}})
	a.log.Info().Str("backing", opts.backing).Str("master", removed.ID).Msg("master key removed")
	fmt.Fprintf(a.stdout, "removed master key %s (%s %s)\n", removed.ID, removed.Kind,
		keys.RedactURI(removed.URI))
	return nil
}

// checkRemove refuses, before anything is unlocked, what RemoveMaster
// would refuse.
func checkRemove(cfg *keys.Config, id string) error {
	if _, ok := cfg.Master(id); !ok {
		ids := make([]string, len(cfg.Masters))
		for i, m := range cfg.Masters {
			ids[i] = m.ID
		}
		return fmt.Errorf("failed to remove master key: %w %q (have %s)", keys.ErrNoMaster, id,
			strings.Join(ids, ", "))
	}
	if len(cfg.Masters) == 1 {
		return fmt.Errorf("failed to remove master key: %w %s: the volume could no longer be "+
			"unlocked; add another master key first", keys.ErrLastMaster, id)
	}
	return nil
}

// removeError adds advice to the errors of keys.RemoveMaster.
func removeError(backing string, err error) error {
	switch {
	case errors.Is(err, keys.ErrLastMaster):
		return withHints(err, "add another master key first: coffer master add "+
			shellQuote(backing)+" URI")
	case errors.Is(err, keys.ErrNoMaster):
		return withHints(err, "'coffer master list "+shellQuote(backing)+"' shows the IDs")
	}
	return err
}
