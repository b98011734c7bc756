package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
// the private half. With --out the file is written under a temporary name
// before the volume changes (removed again if the change fails, so a
// recovery master never exists without its key having been saved) and moved
// to its name after the change, so a file under that name always unlocks.
func runRecoveryNew(ctx context.Context, a *app, opts recoveryNewOptions) error {
	cfg, err := readConfigToWrite(opts.backing)
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
	kill := killPoints()
	tmp := ""
	if opts.out != "" {
		// Saved under a temporary name first: the file appears under its
		// own name only once the key is in the volume, so that a crash
		// leaves no key file that unlocks nothing.
		if tmp, err = writeKeyFileTemp(opts.out, header+priv.Text()+"\n"); err != nil {
			return err
		}
	}
	kill() // 1: key saved, volume not changed

	added, err := keys.AddMaster(ctx, opts.backing, ring, e, keys.AddOptions{Logger: a.log})
	if err != nil {
		if tmp != "" {
			_ = os.Remove(tmp)
		}
		return addError(opts.backing, err)
	}
	kill() // 2: key in the volume, file under its temporary name
	if tmp != "" {
		if err := publishKeyFile(tmp, opts.out); err != nil {
			recordAudit(ctx, a, alog, audit.Event{Type: audit.EventMasterAdded, Master: added.ID,
				Detail: map[string]string{"kind": added.Kind, "unlocked_with": with.ID,
					"fingerprint": priv.Fingerprint()}})
			return withHints(fmt.Errorf("recovery key %s was added as master key %s, but the key file "+
				"could not be moved to %s and is still at %s: %w", priv.Fingerprint(), added.ID,
				opts.out, tmp, err),
				"move it yourself and keep it: mv -n "+shellQuote(tmp)+" "+shellQuote(opts.out),
				"or, if the key is lost, remove the master key: coffer master remove "+
					shellQuote(opts.backing)+" "+added.ID)
		}
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

// writeKeyFileTemp writes text to a new file (mode 0600) next to path, under
// a temporary name starting with "."+base(path)+".tmp-", and returns its
// name; publishKeyFile later moves it to path.
func writeKeyFileTemp(path, text string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("failed to create recovery key file: %w", err)
	}
	// CreateTemp makes the file with O_EXCL and mode 0600.
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("failed to write recovery key file: %w", err)
	}
	return f.Name(), nil
}

// publishKeyFile moves the key file tmp to path, never overwriting path:
// by a hard link, or, where the file system has none (FAT on a USB stick),
// by a rename once path is seen not to exist. The directory is synced.
func publishKeyFile(tmp, path string) error {
	err := os.Link(tmp, path)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s was created meanwhile, and coffer never overwrites a file", path)
	}
	if err == nil {
		err = os.Remove(tmp)
	} else if _, lerr := os.Lstat(path); errors.Is(lerr, fs.ErrNotExist) {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return err
	}
	if d, derr := os.Open(filepath.Dir(path)); derr == nil {
		_ = d.Sync()
		d.Close()
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
