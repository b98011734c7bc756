package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/recovery"
)

type recoveryNewOptions struct {
	unlockOptions
	out string
}

func newRecoveryNewCommand(a *app) *cobra.Command {
	var opts recoveryNewOptions
	cmd := &cobra.Command{
		Use:   "new BACKING",
		Short: "Make a recovery key and add it to a volume",
		Long: `Make a new recovery key pair, add its public half to the volume in BACKING
as a master key of kind "recovery", and print the private half: 14 groups of
5 characters, each group ending in a check character, so that a typing
mistake is caught and the group named. With --out the key is written to a
new file (mode 0600; an existing file is never overwritten) instead.

Adding the key needs an existing master key to unlock the volume (--with,
--passphrase-file and the key flags work as for "coffer master add").
Print the key or write it down and keep it offline: coffer keeps no copy of
the private half.`,
		Example: `  coffer recovery new /srv/app.enc
  coffer recovery new /srv/app.enc --out /mnt/usb/app-recovery.txt`,
		Args: exactArgs("BACKING"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing = args[0]
			return runRecoveryNew(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.out, "out", "", "write the recovery key to this new file (mode 0600)")
	f.StringVar(&opts.with, "with", "", "unlock with this master key (ID or URI)")
	f.StringVar(&opts.passphraseFile, "passphrase-file", "",
		"read the passphrase of an existing passphrase master from this file (mode 0600)")
	opts.masterFlags.add(f)
	return cmd
}

// runRecoveryNew makes the key pair, adds the public half and hands out
// the private half. With --out the file is written before the volume
// changes, and removed again if the change fails, so a recovery master
// never exists without its key having been saved.
func runRecoveryNew(ctx context.Context, a *app, opts recoveryNewOptions) error {
	cfg, err := readConfig(opts.backing)
	if err != nil {
		return err
	}
	if err := checkRoom(opts.backing, cfg); err != nil {
		return err
	}
	if err := checkOutFile(opts.out, opts.backing); err != nil {
		return err
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

	priv, err := recovery.Generate()
	if err != nil {
		return err
	}
	defer priv.Wipe()
	e, err := priv.Enrollment()
	if err != nil {
		return err
	}
	header := fmt.Sprintf("# coffer recovery key %s for volume %s, made %s\n", priv.Fingerprint(),
		cfg.VolumeID, time.Now().UTC().Format(time.RFC3339))
	if opts.out != "" {
		if err := writeKeyFile(opts.out, header+priv.Text()+"\n"); err != nil {
			return err
		}
	}

	added, err := keys.AddMaster(ctx, opts.backing, ring, e, keys.AddOptions{Logger: a.log})
	if err != nil {
		if opts.out != "" {
			_ = os.Remove(opts.out)
		}
		return addError(opts.backing, err)
	}
	recordAudit(ctx, a, alog, audit.Event{Type: audit.EventMasterAdded, Master: added.ID,
		Detail: map[string]string{"kind": added.Kind, "unlocked_with": with.ID,
			"fingerprint": priv.Fingerprint()}})
	printRecovery(a.stdout, opts, cfg.VolumeID, added.ID, priv)
	return nil
}

// checkOutFile refuses, before anything is unlocked, an --out file that
// exists or lies in the backing directory.
func checkOutFile(out, backing string) error {
	if out == "" {
		return nil
	}
	if _, err := os.Lstat(out); err == nil {
		return withHints(fmt.Errorf("%s already exists", out),
			"coffer never overwrites a file: choose another path")
	}
	inside, err := isInside(backing, filepath.Dir(out))
	if err != nil {
		return err
	}
	if inside {
		return usageErrorf("%s is inside the backing directory: keep it away from the volume", out)
	}
	return nil
}

// isInside reports whether dir, resolved, is backing or below it.
func isInside(backing, dir string) (bool, error) {
	b, err := filepath.EvalSymlinks(backing)
	if err != nil {
		return false, fmt.Errorf("failed to resolve %s: %w", backing, err)
	}
	d, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false, fmt.Errorf("failed to resolve %s: %w", dir, err)
	}
	rel, err := filepath.Rel(b, d)
	if err != nil {
		return false, nil
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))), nil
}

// writeKeyFile creates path (mode 0600, never overwriting) holding text.
func writeKeyFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return withHints(fmt.Errorf("%s already exists", path),
			"coffer never overwrites a file: choose another path")
	}
	if err != nil {
		return fmt.Errorf("failed to create recovery key file: %w", err)
	}
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("failed to write recovery key file: %w", err)
	}
	return nil
}

// printRecovery tells what was made, with the key itself unless it went to
// a file.
func printRecovery(w io.Writer, opts recoveryNewOptions, vol keys.VolumeID, id string,
	priv *recovery.PrivateKey) {
	fmt.Fprintf(w, "added recovery key %s as master key %s of volume %s\n", priv.Fingerprint(),
		id, vol)
	if opts.out != "" {
		fmt.Fprintf(w, "wrote the private recovery key to %s (mode 0600)\n", opts.out)
		fmt.Fprintf(w, "unlock with: coffer mount %s MOUNTPOINT --recovery-key %s\n",
			shellQuote(opts.backing), shellQuote(opts.out))
		return
	}
	fmt.Fprintf(w, "\nrecovery key (print it or write it down; coffer keeps no copy):\n\n")
	for _, line := range strings.Split(priv.Text(), "\n") {
		fmt.Fprintf(w, "    %s\n", line)
	}
	fmt.Fprintf(w, "\nunlock with: coffer mount %s MOUNTPOINT --recovery-key -\n",
		shellQuote(opts.backing))
}
