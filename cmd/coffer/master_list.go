package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/recovery"
)

type masterListOptions struct {
	backing string
	json    bool
}

func newMasterListCommand(a *app) *cobra.Command {
	var opts masterListOptions
	cmd := &cobra.Command{
		Use:   "list BACKING",
		Short: "List a volume's master keys",
		Long: `List the master keys of the volume in BACKING: ID, kind, when added, when it
last unlocked the volume (as far as .coffer/usage.json, written by mount,
knows; "-" when unknown), and URI with any secret redacted; a recovery key's
URI is followed by the fingerprint of the public key it seals to (as printed
with the key: compare them). No key is needed. The order is the order in which mount tries them.`,
		Example: `  coffer master list /srv/app.enc
  coffer master list /srv/app.enc --json | jq -r '.[].id'`,
		Args: exactArgs("BACKING"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing = args[0]
			return runMasterList(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.json, "json", false, "print a JSON array")
	return cmd
}

// masterListEntry is one line of the list; its JSON form is the --json
// output.
type masterListEntry struct {
	ID       string     `json:"id"`
	Kind     string     `json:"kind"`
	URI      string     `json:"uri"`
	Added    time.Time  `json:"added"`
	LastUsed *time.Time `json:"last_used"`
	// Fingerprint is a recovery key's fingerprint, as printed with the
	// key, of the public key the entry seals to.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// runMasterList prints the master keys.
func runMasterList(_ context.Context, a *app, opts masterListOptions) error {
	cfg, err := readConfig(opts.backing)
	if err != nil {
		return err
	}
	used, err := keys.LastUsed(opts.backing)
	if err != nil {
		a.log.Warn().Err(err).Msg("failed to read when master keys were last used")
	}
	list := make([]masterListEntry, 0, len(cfg.Masters))
	for _, m := range cfg.Masters {
		e := masterListEntry{ID: m.ID, Kind: m.Kind, URI: keys.RedactURI(m.URI), Added: m.Added}
		e.Fingerprint, _ = recovery.EntryFingerprint(m)
		if at, ok := used[m.ID]; ok {
			e.LastUsed = &at
		}
		list = append(list, e)
	}

	if opts.json {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\tKIND\tADDED\tLAST USED\tURI\n")
	for _, e := range list {
		last := "-"
		if e.LastUsed != nil {
			last = e.LastUsed.Format(time.RFC3339)
		}
		uri := printable(e.URI)
		if e.Fingerprint != "" {
			uri += " key " + e.Fingerprint
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", printable(e.ID), printable(e.Kind),
			e.Added.Format(time.RFC3339), last, uri)
	}
	return tw.Flush()
}
