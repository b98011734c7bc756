package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newGenManCommand builds the hidden command that writes the man pages, one
// per command, from the same help text --help prints. make install runs
// it; the pages are not kept in the repository.
func newGenManCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write the man pages of every command to DIR",
		Hidden: true,
		Args:   exactArgs("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGenMan(cmd.Root(), args[0])
		},
	}
}

// runGenMan writes section 1 man pages for root and its subcommands to dir.
func runGenMan(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("failed to create man page directory: %w", err)
	}
	root.DisableAutoGenTag = true // no date: the pages do not change with each build
	header := &doc.GenManHeader{Section: "1", Source: "coffer " + version,
		Manual: "coffer manual"}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("failed to write man pages: %w", err)
	}
	return nil
}
