package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/keys/keyfile"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/recovery"
)

func newKeysCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create master keys",
		Long: `Commands that manage master keys outside any volume.

Kinds with a creation step: key files (file:///ABSOLUTE/PATH) and keys in a
PKCS#11 token (pkcs11:token=LABEL;object=LABEL). A passphrase master
(passphrase:) needs no creation step: "coffer init" asks for the passphrase.`,
		Args:                       cobra.ArbitraryArgs,
		RunE:                       runGroup,
		SuggestionsMinimumDistance: 2,
	}
	cmd.AddCommand(newKeysCreateCommand(a))
	return cmd
}

type keysCreateOptions struct {
	uri string
	masterFlags
}

func newKeysCreateCommand(a *app) *cobra.Command {
	var opts keysCreateOptions
	cmd := &cobra.Command{
		Use:   "create URI",
		Short: "Create a new master key",
		Long: `Create a new master key at URI.

For file:///ABSOLUTE/PATH, write 32 random bytes to PATH with mode 0600. The
directory must exist; an existing file is never overwritten. Keep the key
file off the disk that holds the backing directory, and keep a copy: without
it the volumes it protects cannot be opened.

For pkcs11:token=LABEL;object=LABEL, log in to the token and generate an
AES-256 key labelled LABEL inside it, sensitive and never extractable. The
PIN comes from the URI's pin-source=file:/PATH, else --pin-file, else the
terminal; never from the URI itself. A label the token already holds is
refused.`,
		Example: `  mkdir -m 700 -p /etc/coffer
  coffer keys create file:///etc/coffer/app.key
  coffer keys create "file://$PWD/master.key"
  coffer keys create 'pkcs11:token=coffer;object=app' --pin-file /etc/coffer/token.pin`,
		Args: exactArgs("URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.uri = args[0]
			return runKeysCreate(cmd.Context(), a, opts)
		},
	}
	opts.masterFlags.add(cmd.Flags())
	return cmd
}

// runKeysCreate creates the master key named by opts.uri.
func runKeysCreate(ctx context.Context, a *app, opts keysCreateOptions) error {
	ref, err := parseMasterURI(opts.uri)
	if err != nil {
		return err
	}
	if ref.Kind != keyfile.Kind {
		mopts := opts.masterFlags.options()
		mopts.PIN = pinPrompt(a)
		msg, err := masterkey.Create(ctx, ref.URI, mopts)
		if errors.Is(err, masterkey.ErrNoCreate) && ref.Kind == recovery.Kind {
			return withHints(usageErrorf("recovery keys are made for a volume, not by keys create"),
				"make one for an existing volume: coffer recovery new BACKING")
		}
		if errors.Is(err, masterkey.ErrNoCreate) {
			return withHints(usageErrorf("%s master keys need no creation step", ref.Kind),
				"name it with --master at init: coffer init BACKING --master "+ref.String())
		}
		if err != nil {
			return fmt.Errorf("failed to create master key %s: %w", ref, err)
		}
		fmt.Fprintln(a.stdout, msg)
		fmt.Fprintf(a.stdout, "use it with: --master %s\n", ref)
		return nil
	}

	if err := keyfile.Create(ref.Path); err != nil {
		return keyCreateError(ref.Path, err)
	}
	fmt.Fprintf(a.stdout, "created key file %s (%d random bytes, mode 0600)\n", ref.Path, keyfile.Size)
	fmt.Fprintf(a.stdout, "use it with: --master %s\n", ref.URI)
	return nil
}

// keyCreateError adds advice to the usual reasons a key file cannot be
// created.
func keyCreateError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrExist):
		return withHints(err, "coffer never overwrites a key file: choose another path")
	case errors.Is(err, fs.ErrNotExist):
		return withHints(err, "create the directory first: mkdir -m 700 -p "+filepath.Dir(path))
	}
	return err
}

// parseMasterURI parses a master-key URI given on the command line. A URI
// that does not parse or names an unknown scheme is a usage error.
func parseMasterURI(uri string) (masterkey.Ref, error) {
	ref, err := masterkey.Parse(uri)
	switch {
	case err == nil:
		return ref, nil
	case errors.Is(err, masterkey.ErrUnknownScheme) && strings.Contains(err.Error(), "supported:"):
		// The error lists the schemes already.
		return ref, withHints(asUsage(err), "a key file path must be absolute: file:///ABSOLUTE/PATH")
	case errors.Is(err, masterkey.ErrMalformed) || errors.Is(err, masterkey.ErrUnknownScheme):
		return ref, withHints(asUsage(err),
			"master key URIs: "+masterkey.Supported()+" (a key file path must be absolute)")
	default:
		return ref, err
	}
}
