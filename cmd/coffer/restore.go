package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
)

type restoreOptions struct {
	backing string
	file    string
	force   bool
}

func newRestoreCommand(a *app) *cobra.Command {
	var opts restoreOptions
	cmd := &cobra.Command{
		Use:   "restore BACKING FILE",
		Short: "Restore a volume's config from a backup",
		Long: `Put the volume config saved by "coffer backup" in FILE back into
BACKING/.coffer, recreating the folder if it is gone.

restore refuses a backup of another volume (no option overrides that) and a
config written by a newer coffer. It refuses, unless --force, a backup that
is older than the config it would replace (a lower ring generation: files
written since may need ring keys the backup lacks), or that lists other
master keys at the same generation (it would bring back removed master
keys). It refuses, unless --force, to replace a config that cannot be read:
nothing can be compared with the backup, and whoever can write BACKING can
damage the config so that an old backup brings back removed master keys.
The damaged config is moved aside to volume.json.damaged-TIME, not
deleted. No key is needed.

restore refuses while the volume is mounted anywhere (a mount of this host,
or one on another host sharing the backing directory that has recorded
itself in .coffer/mounts): running mounts keep the key ring they loaded and
would write files that the restored config cannot read. Unmount every mount
first.`,
		Example: `  coffer restore /srv/app.enc /root/app.enc.coffer-backup`,
		Args:    exactArgs("BACKING", "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing, opts.file = args[0], args[1]
			return runRestore(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.force, "force", false,
		"restore a backup older than the current config, or over one that cannot be read "+
			"(see above)")
	return cmd
}

// runRestore restores the config.
func runRestore(ctx context.Context, a *app, opts restoreOptions) error {
	backup, created, err := keys.ReadBackup(opts.file)
	if err != nil {
		return err
	}
	// A running mount keeps the ring it loaded and would go on wrapping
	// data keys under ring keys the restored config no longer has.
	lock, err := lockRestore(opts.backing)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := keys.CheckReserved(opts.backing); err != nil {
		return err
	}
	res, err := keys.Restore(opts.backing, backup, keys.RestoreOptions{Force: opts.force, Logger: a.log})
	recordRestore(ctx, a, opts, backup, res, err)
	switch {
	case errors.Is(err, keys.ErrVolumeMismatch):
		return withHints(err, "use the backup of this volume; 'coffer status BACKING' shows its ID")
	case errors.Is(err, keys.ErrNotComparable):
		return withHints(err, "anyone who can write "+opts.backing+" can damage the config so "+
			"that an old backup brings back removed master keys: check that this backup is the "+
			"newest you have (a rotation or master key change since makes it a rollback)",
			"then restore with --force; the damaged config is moved aside, not deleted")
	case errors.Is(err, keys.ErrRollback):
		return withHints(err, "take a backup of the current config first (coffer backup), then "+
			"restore with --force only if the current config is the wrong one")
	case errors.Is(err, fs.ErrNotExist):
		return withHints(err, "check the path of the backing directory")
	case err != nil:
		return err
	}

	switch {
	case res.Unchanged:
		fmt.Fprintf(a.stdout, "volume %s already matches the backup: nothing to do\n", backup.VolumeID)
	case res.Previous != nil:
		fmt.Fprintf(a.stdout, "restored volume %s from the backup of %s (ring generation %d, "+
			"was %d)\n", backup.VolumeID, created.Format("2006-01-02 15:04:05Z"),
			backup.Ring.Generation, res.Previous.Ring.Generation)
	default:
		fmt.Fprintf(a.stdout, "restored volume %s from the backup of %s (ring generation %d)\n",
			backup.VolumeID, created.Format("2006-01-02 15:04:05Z"), backup.Ring.Generation)
	}
	if res.Damaged != "" {
		fmt.Fprintf(a.stdout, "the unreadable config was moved to %s\n", res.Damaged)
	}
	if res.Replaced != "" {
		fmt.Fprintf(a.stdout, "the replaced config was kept as %s (to undo the restore: "+
			"mv %s %s)\n", res.Replaced, shellQuote(res.Replaced),
			shellQuote(keys.ConfigPath(opts.backing)))
	}
	return nil
}

// recordRestore records a restore that was attempted on an existing volume
// directory (not one refused for naming another volume) in the audit log
// of the backup's volume. The .coffer folder, and with it the head anchor,
// may have been recreated: the anchor starts again from the log's end.
func recordRestore(ctx context.Context, a *app, opts restoreOptions, backup *keys.Config,
	res keys.RestoreResult, err error) {
	if errors.Is(err, keys.ErrVolumeMismatch) || errors.Is(err, fs.ErrNotExist) || res.Unchanged {
		return
	}
	alog, oerr := openAudit(a, opts.backing, backup.VolumeID)
	if oerr != nil {
		a.log.Error().Err(oerr).Msg("failed to record the restore in the audit log")
		return
	}
	defer closeAudit(a, alog)
	detail := map[string]string{"file": absPath(opts.file),
		"generation": strconv.FormatUint(backup.Ring.Generation, 10),
		"masters":    mastersDetail(backup), "force": strconv.FormatBool(opts.force)}
	if res.Previous != nil {
		detail["previous_generation"] = strconv.FormatUint(res.Previous.Ring.Generation, 10)
	}
	recordAudit(ctx, a, alog, audit.Event{Type: audit.EventConfigRestored, Err: err, Detail: detail})
}
