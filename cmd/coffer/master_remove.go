package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/passphrase"
	"github.com/cofferfs/coffer/keys/recovery"
)

type masterRemoveOptions struct {
	unlockOptions
	id                   string
	allowInteractiveOnly bool
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

Nor is the last master key removed that unlocks without a person (any kind
but passphrase: and recovery): with only those left, a mount at boot would
wait for someone to type a passphrase or recovery key. Add another such key
first, or pass --allow-interactive-only when a person mounts the volume
anyway.

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
	f.BoolVar(&opts.allowInteractiveOnly, "allow-interactive-only", false,
		"remove the last master key that unlocks without a person (passphrase or recovery "+
			"key left)")
	opts.masterFlags.add(f)
	return cmd
}

// runMasterRemove removes one master key.
func runMasterRemove(ctx context.Context, a *app, opts masterRemoveOptions) error {
	cfg, err := readConfigToWrite(opts.backing)
	if err != nil {
		return err
	}
	if err := checkRemove(cfg, opts.id); err != nil {
		return removeError(opts.backing, err)
	}
	ropts := keys.RemoveOptions{Check: checkUnattended}
	if opts.allowInteractiveOnly {
		ropts.Check = nil
	} else if err := checkUnattended(cfg, removing(cfg, opts.id)); err != nil {
		return removeError(opts.backing, fmt.Errorf("failed to remove master key: %w", err))
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

	removed, err := keys.RemoveMaster(opts.backing, opts.id, ropts)
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

// errLastUnattended reports a removal that would leave only master keys
// that need a person at every unlock.
var errLastUnattended = errors.New("is the last master key that unlocks without a person")

// attendedKinds are the master-key kinds that need a person at every
// unlock: someone types the passphrase or the recovery key, or keeps the
// file it is in. (A passphrase file at boot is possible but is a key file
// in weaker form; it does not count.)
var attendedKinds = map[string]bool{passphrase.Kind: true, recovery.Kind: true}

// removing returns the entry of master key id, which checkRemove found.
func removing(cfg *keys.Config, id string) keys.MasterEntry {
	m, _ := cfg.Master(id)
	return m
}

// checkUnattended refuses to remove m when it is the last master key of
// cfg that unlocks without a person. A volume that never had one (a
// passphrase volume mounted by hand) is left alone.
func checkUnattended(cfg *keys.Config, m keys.MasterEntry) error {
	if attendedKinds[m.Kind] {
		return nil
	}
	var left []string
	for _, o := range cfg.Masters {
		if o.ID == m.ID {
			continue
		}
		if !attendedKinds[o.Kind] {
			return nil
		}
		left = append(left, o.Kind+" "+o.ID)
	}
	return fmt.Errorf("%s (%s) %w; only %s would be left, and a mount at boot would wait "+
		"for someone to type one", m.ID, m.Kind, errLastUnattended, strings.Join(left, ", "))
}

// removeError adds advice to the errors of keys.RemoveMaster.
func removeError(backing string, err error) error {
	switch {
	case errors.Is(err, errLastUnattended):
		return withHints(err, "add a key that unlocks unattended first (tpm2:, a KMS, pkcs11: "+
			"with a PIN file, file://): coffer master add "+shellQuote(backing)+" URI",
			"or, if a person mounts this volume, pass --allow-interactive-only")
	case errors.Is(err, keys.ErrLastMaster):
		return withHints(err, "add another master key first: coffer master add "+
			shellQuote(backing)+" URI")
	case errors.Is(err, keys.ErrNoMaster):
		return withHints(err, "'coffer master list "+shellQuote(backing)+"' shows the IDs")
	}
	return err
}
