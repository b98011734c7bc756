package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	cofferfs "github.com/cofferfs/coffer/fs"
)

// pathOptions are the options of "coffer path encrypt|decrypt".
type pathOptions struct {
	backing        string
	path           string
	master         string
	passphraseFile string
	masterFlags
}

func newPathCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "path",
		Short: "Map paths inside a volume to backing paths and back",
		Long: `Map a path inside a volume to its path in the backing directory (encrypt), or
a backing path to the path it stands for (decrypt), for working with backups
of the backing directory. The volume is unlocked as mount unlocks it. With a
volume made with --plaintext-names both directions print the path as given.`,
	}
	cmd.AddCommand(newPathSubcommand(a, "encrypt", "PLAINPATH",
		"Print the backing path of a path inside the volume",
		`  coffer path encrypt /srv/app.enc /config/prod-db-password.conf`),
		newPathSubcommand(a, "decrypt", "BACKINGPATH",
			"Print the path inside the volume of a backing path",
			`  coffer path decrypt /srv/app.enc /srv/app.enc/Vq3w.../k9Zx...
  coffer path decrypt /srv/app.enc -- -q3w.../k9Zx...   (-- before a name starting with -)`))
	return cmd
}

func newPathSubcommand(a *app, verb, arg, short, example string) *cobra.Command {
	var opts pathOptions
	cmd := &cobra.Command{
		Use:     verb + " BACKING " + arg,
		Short:   short,
		Example: example,
		Args:    exactArgs("BACKING", arg),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing, opts.path = args[0], args[1]
			return runPath(cmd.Context(), a, verb, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.master, "master", "", "unlock only with this master key (ID or URI)")
	f.StringVar(&opts.passphraseFile, "passphrase-file", "",
		"read the passphrase from this file (mode 0600) instead of the terminal")
	opts.masterFlags.add(f)
	return cmd
}

// runPath unlocks the volume and prints the mapped path.
func runPath(ctx context.Context, a *app, verb string, opts pathOptions) error {
	mopts := mountOptions{backing: opts.backing, master: opts.master,
		passphraseFile: opts.passphraseFile, masterFlags: opts.masterFlags}
	cfg, err := readConfigToWrite(opts.backing)
	if err != nil {
		return err
	}
	if _, err := mopts.candidates(cfg); err != nil {
		return err
	}
	secret, err := mountPassphrase(a, mopts, cfg)
	if err != nil {
		return err
	}
	// Failed unlocks are recorded as a mount's are.
	alog, err := openAudit(a, opts.backing, cfg.VolumeID)
	if err != nil {
		secret.Wipe()
		return err
	}
	defer closeAudit(a, alog)
	ring, _, err := unlock(ctx, a, mopts, cfg, secret, unlockFailures(ctx, a, alog))
	if err != nil {
		return err
	}
	r, err := cofferfs.NewResolver(opts.backing, cofferfs.Options{VolumeID: cfg.VolumeID,
		Keys: ring, EncryptNames: cfg.EncryptedNames(), Logger: a.log})
	if err != nil {
		return err
	}

	if verb == "encrypt" {
		rel, err := r.Encrypt(opts.path)
		if err != nil {
			return withHints(fmt.Errorf("failed to map %s to a backing path: %w", opts.path, err),
				"every directory on the path must exist in the volume")
		}
		fmt.Fprintln(a.stdout, filepath.Join(opts.backing, rel))
		return nil
	}

	rel, err := backingRelative(opts.backing, opts.path)
	if err != nil {
		return err
	}
	plain, err := r.Decrypt(rel)
	if err != nil {
		return fmt.Errorf("failed to map %s to a path in the volume: %w", opts.path, err)
	}
	fmt.Fprintln(a.stdout, "/"+plain)
	return nil
}

// backingRelative returns p relative to the backing directory. An absolute
// p must lie inside it. A relative p is taken relative to the current
// directory when that lands inside the backing directory (so that what
// "path encrypt" prints for a relative BACKING decrypts), else relative to
// the backing directory.
func backingRelative(backing, p string) (string, error) {
	base, err := filepath.Abs(backing)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(p) {
		if abs, err := filepath.Abs(p); err == nil {
			if rel, ok := relInside(base, abs); ok && rel != "." {
				return rel, nil
			}
		}
		return filepath.Clean(p), nil
	}
	rel, ok := relInside(base, filepath.Clean(p))
	if !ok {
		return "", usageErrorf("%s is not inside the backing directory %s", p, backing)
	}
	return rel, nil
}

// relInside returns p relative to base, both absolute and clean, if p is
// base or lies under it.
func relInside(base, p string) (string, bool) {
	rel, err := filepath.Rel(base, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return rel, true
}
