package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
)

type backupOptions struct {
	backing string
	file    string
}

func newBackupCommand(a *app) *cobra.Command {
	var opts backupOptions
	cmd := &cobra.Command{
		Use:   "backup BACKING FILE",
		Short: "Back up a volume's config and sealed ring copies",
		Long: `Write the volume config of BACKING (volume ID, master keys, and the ring
sealed once to each master key) to FILE, a new file with mode 0600; an
existing file is never overwritten. No key is needed and none is written:
the backup opens only with the volume's master keys. "coffer restore" puts
it back after a lost .coffer folder or a backing directory restored from an
old copy; see docs/recovery.md.

Take a new backup after every change of master keys or ring.`,
		Example: `  coffer backup /srv/app.enc /root/app.enc.coffer-backup`,
		Args:    exactArgs("BACKING", "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing, opts.file = args[0], args[1]
			return runBackup(cmd.Context(), a, opts)
		},
	}
	return cmd
}

// runBackup writes the backup.
func runBackup(ctx context.Context, a *app, opts backupOptions) error {
	if opts.file == "-" {
		// Not standard output: a backup is a file of mode 0600 that is
		// never overwritten, which a pipe or terminal is not.
		return withHints(usageErrorf("backup FILE - is not supported: coffer backup writes "+
			"a new file, not standard output"), "give a path (./- for a file named -)")
	}
	current, err := readConfigToWrite(opts.backing)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(opts.file); err == nil {
		return withHints(fmt.Errorf("%s already exists", opts.file),
			"coffer never overwrites a file: choose another path")
	}
	inside, err := isInside(opts.backing, filepath.Dir(opts.file))
	if err != nil {
		return err
	}
	if inside {
		return usageErrorf("%s is inside the backing directory: keep the backup elsewhere", opts.file)
	}

	alog, err := openAudit(a, opts.backing, current.VolumeID)
	if err != nil {
		return err
	}
	defer closeAudit(a, alog)
	cfg, err := keys.WriteBackup(opts.backing, opts.file)
	exported := audit.Event{Type: audit.EventBackupExported, Err: err,
		Detail: map[string]string{"file": absPath(opts.file)}}
	if err == nil {
		exported.Detail["masters"] = mastersDetail(cfg)
		exported.Detail["generation"] = strconv.FormatUint(cfg.Ring.Generation, 10)
	}
	recordAudit(ctx, a, alog, exported)
	if errors.Is(err, os.ErrExist) {
		return withHints(err, "coffer never overwrites a file: choose another path")
	}
	if err != nil {
		return err
	}
	a.log.Info().Str("backing", opts.backing).Str("file", opts.file).Msg("volume config exported")
	fmt.Fprintf(a.stdout, "wrote backup of volume %s (%d master keys, ring generation %d) to %s\n",
		cfg.VolumeID, len(cfg.Masters), cfg.Ring.Generation, opts.file)
	return nil
}
