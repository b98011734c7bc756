package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/keyfile"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/passphrase"
)

type masterAddOptions struct {
	unlockOptions
	uri               string
	newPassphraseFile string

	cost    passphrase.Cost
	costSet bool
}

func newMasterAddCommand(a *app) *cobra.Command {
	var opts masterAddOptions
	def := passphrase.DefaultCost()
	var memMiB uint32
	cmd := &cobra.Command{
		Use:   "add BACKING URI",
		Short: "Add a master key to a volume",
		Long: `Unlock the volume in BACKING with one of its master keys (the one --with
names, by ID or URI, or else the first that works), seal its ring to the
master key URI, and record it in BACKING/.coffer/volume.json.

The new sealed copy is made and checked to open before the config is
touched: a URI that cannot seal (a wrong key, an unreachable service) leaves
the volume as it was. Changes to the config are serialised by a lock file,
.coffer/lock, so two admins adding keys at once both succeed. A volume holds
at most 32 master keys.

The passphrase of an existing passphrase master is read from
--passphrase-file or asked on the terminal; a new passphrase (URI
passphrase:) from --new-passphrase-file or asked twice.`,
		Example: `  coffer master add /srv/app.enc file:///etc/coffer/second.key
  coffer master add /srv/app.enc passphrase: --with 1a2b3c4d
  coffer master add /srv/app.enc file:///mnt/usb/app.key --recovery-key /mnt/safe/recovery.txt`,
		Args: exactArgs("BACKING", "URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing, opts.uri = args[0], args[1]
			kib, err := argon2MemoryKiB(memMiB)
			if err != nil {
				return err
			}
			opts.cost.MemoryKiB = kib
			f := cmd.Flags()
			opts.costSet = f.Changed("argon2-time") || f.Changed("argon2-memory") ||
				f.Changed("argon2-threads")
			return runMasterAdd(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.with, "with", "", "unlock with this master key (ID or URI)")
	f.StringVar(&opts.passphraseFile, "passphrase-file", "",
		"read the passphrase of an existing passphrase master from this file (mode 0600)")
	f.StringVar(&opts.newPassphraseFile, "new-passphrase-file", "",
		"read the new passphrase from this file (mode 0600), for URI passphrase:")
	opts.masterFlags.add(f)
	f.Uint32Var(&opts.cost.Time, "argon2-time", def.Time, "Argon2id passes for a new passphrase master")
	f.Uint32Var(&memMiB, "argon2-memory", def.MemoryKiB>>10, "Argon2id memory in MiB for a new passphrase master")
	f.Uint8Var(&opts.cost.Threads, "argon2-threads", def.Threads, "Argon2id threads for a new passphrase master")
	return cmd
}

// runMasterAdd unlocks the volume, enrolls the new master key and adds it.
func runMasterAdd(ctx context.Context, a *app, opts masterAddOptions) error {
	ref, err := opts.check()
	if err != nil {
		return err
	}
	cfg, err := readConfigToWrite(opts.backing)
	if err != nil {
		return err
	}
	if err := checkRoom(opts.backing, cfg); err != nil {
		return err
	}
	if err := checkSameKeyFile(opts.backing, cfg, ref); err != nil {
		return err
	}
	if err := opts.checkPlaces(a); err != nil {
		return err
	}

	// No change of master keys without its audit record: the log opens
	// first, and records MACed with the unlocked ring.
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
	e, err := masterkey.Enroll(ctx, ref.URI, opts.enrollOptions(a))
	if err != nil {
		return fmt.Errorf("failed to enroll master key %s: %w", ref, err)
	}
	defer wipeMasters([]keys.Enrollment{e})

	added, err := keys.AddMaster(ctx, opts.backing, ring, e, keys.AddOptions{Logger: a.log})
	if err != nil {
		return addError(opts.backing, err)
	}
	recordAudit(ctx, a, alog, audit.Event{Type: audit.EventMasterAdded, Master: added.ID,
		Detail: map[string]string{"kind": added.Kind, "unlocked_with": with.ID}})
	fmt.Fprintf(a.stdout, "added master key %s (%s %s) to volume %s, unlocked with %s\n",
		added.ID, added.Kind, keys.RedactURI(added.URI), cfg.VolumeID, with.ID)
	return nil
}

// check validates the flags and parses the URI.
func (o masterAddOptions) check() (masterkey.Ref, error) {
	ref, err := parseMasterURI(o.uri)
	if err != nil {
		return ref, err
	}
	isPass := ref.Kind == passphrase.Kind
	switch {
	case !isPass && o.newPassphraseFile != "":
		return ref, usageErrorf("--new-passphrase-file needs the URI passphrase:")
	case !isPass && o.costSet:
		return ref, usageErrorf("--argon2-* flags need the URI passphrase:")
	case o.costSet:
		if err := o.cost.Validate(); err != nil {
			return ref, asUsage(fmt.Errorf("invalid Argon2id cost: %w", err))
		}
	}
	return ref, nil
}

// checkPlaces refuses a new key file, PIN file or pin-source inside a
// mount of the volume or its backing directory, and warns of a recovery key
// or passphrase file inside a mount.
func (o masterAddOptions) checkPlaces(a *app) error {
	places := uriPlaces(o.uri)
	places = append(places, flagPlaces(o.masterFlags, "--passphrase-file", o.passphraseFile,
		false)...)
	if o.newPassphraseFile != "" {
		places = append(places, keyPlace{what: "the passphrase file (--new-passphrase-file)",
			path: o.newPassphraseFile})
	}
	warnings, err := checkKeyPlaces(o.backing, volumeMounts(o.backing), places)
	for _, w := range warnings {
		a.log.Warn().Msg(w)
	}
	return err
}

// enrollOptions are the options for enrolling the new master key.
func (o masterAddOptions) enrollOptions(a *app) masterkey.Options {
	mopts := o.masterFlags.options()
	mopts.Backing = o.backing
	mopts.PIN = pinPrompt(a)
	mopts.RecoveryKeyText = recoveryKeyReader(a)
	mopts.Passphrase = func(context.Context, masterkey.PassphraseRequest) (*keys.Secret, error) {
		if o.newPassphraseFile != "" {
			return readPassphraseFile(o.newPassphraseFile)
		}
		return promptPassphrase(a, "New passphrase: ", true)
	}
	if o.costSet {
		mopts.PassphraseCost = &o.cost
	}
	return mopts
}

// checkRoom refuses, before any prompt, a volume that is full.
func checkRoom(backing string, cfg *keys.Config) error {
	if len(cfg.Masters) < keys.MaxMasters {
		return nil
	}
	return addError(backing, fmt.Errorf("%w: it has %d, the limit", keys.ErrTooManyMasters,
		len(cfg.Masters)))
}

// addError adds advice to the errors of keys.AddMaster.
// checkSameKeyFile refuses a key file that is already enrolled under
// another name (a symbolic or hard link, or a path with "..") before
// anything is unlocked: the URIs differ, but it is one key, and the
// volume would only seem to have one more.
func checkSameKeyFile(backing string, cfg *keys.Config, ref masterkey.Ref) error {
	if ref.Kind != keyfile.Kind {
		return nil
	}
	fi, err := os.Stat(ref.Path)
	if err != nil {
		return nil // enrolling reports it
	}
	for _, m := range cfg.Masters {
		if m.Kind != keyfile.Kind {
			continue
		}
		old, err := parseMasterURI(m.URI)
		if err != nil {
			continue
		}
		if ofi, err := os.Stat(old.Path); err == nil && os.SameFile(fi, ofi) {
			return addError(backing, fmt.Errorf("%w: %s is the same file as master key %s (%s)",
				keys.ErrDuplicateMaster, ref.Path, m.ID, old.Path))
		}
	}
	return nil
}

func addError(backing string, err error) error {
	switch {
	case errors.Is(err, keys.ErrTooManyMasters):
		return withHints(err, "remove one first: coffer master remove "+shellQuote(backing)+" ID")
	case errors.Is(err, keys.ErrDuplicateMaster):
		return withHints(err, "'coffer master list "+shellQuote(backing)+"' shows the volume's "+
			"master keys")
	case errors.Is(err, keys.ErrRotationRunning):
		return withHints(err, "nothing was changed; run the command again once the coffer "+
			"rotate running on "+shellQuote(backing)+" has finished")
	case errors.Is(err, keys.ErrConfigChanged):
		return withHints(err, "the volume changed while this command ran: run it again")
	}
	return err
}
