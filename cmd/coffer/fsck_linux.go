package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/fs/check"
	"github.com/cofferfs/coffer/keys"
)

type fsckOptions struct {
	backing        string
	repair         bool
	json           bool
	master         string
	passphraseFile string
	masterFlags
}

const fsckLong = `Check every file of the volume in BACKING: its size, its header and key
slots, and every block, which must authenticate under the file's data key.
The volume is unlocked as "coffer mount" unlocks it.

With encrypted names it also checks every directory's record
(.coffer.dir), that every entry name decrypts under its directory's key,
every long name's sidecar, and temporary names left by a crash.

Each problem is named with its backing path, what is wrong, and what
--repair does about it:
  restore   an overwrite of the block was cut by a crash; its last complete
            version is in the file's undo record (the mount reads it too)
  rollback  a write that grew the last block was cut by a crash; the file
            goes back to its size and last block from before that write
  truncate  the last block was cut or is damaged; the file is cut before it
            and the block's content is lost
  remove    a sidecar whose long name is gone or a temporary name left by
            a crash; it holds no data and is removed
  none      the data is lost or cannot be reached through the mount:
            restore the file, or the directory record or sidecar, from a
            backup of the backing directory

--repair makes these repairs and removes undo records of deleted files. It
never changes data that authenticates, and refuses to run while the volume
is mounted. Without --repair nothing is written; on a mounted volume, blocks
being written during the check may be reported as damaged.

Progress is shown on a terminal; the report goes to standard output, as text
or, with --json, as one JSON object.`

const fsckExample = `  coffer fsck /srv/app.enc
  coffer fsck /srv/app.enc --json | jq '.problems[] | .backing'
  coffer unmount /srv/app && coffer fsck /srv/app.enc --repair`

func newFsckCommand(a *app) *cobra.Command {
	var opts fsckOptions
	cmd := &cobra.Command{
		Use:     "fsck BACKING",
		Short:   "Check a volume's files, blocks, directory records and names, and repair what a crash left",
		Long:    fsckLong,
		Example: fsckExample,
		Args:    exactArgs("BACKING"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing = args[0]
			return runFsck(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.repair, "repair", false, "repair what can be repaired (the volume must not be mounted)")
	f.BoolVar(&opts.json, "json", false, "print the report as one JSON object")
	f.StringVar(&opts.master, "master", "", "unlock only with this master key (ID or URI)")
	f.StringVar(&opts.passphraseFile, "passphrase-file", "",
		"read the passphrase from this file (mode 0600) instead of the terminal")
	opts.masterFlags.add(f)
	return cmd
}

// runFsck unlocks the volume, checks it and prints the report.
func runFsck(ctx context.Context, a *app, opts fsckOptions) error {
	mopts := mountOptions{backing: opts.backing, master: opts.master,
		passphraseFile: opts.passphraseFile, masterFlags: opts.masterFlags}
	if err := mopts.parse(); err != nil {
		return err
	}
	cfg, err := readConfig(mopts.backing)
	if err != nil {
		return err
	}
	if _, err := mopts.candidates(cfg); err != nil {
		return err
	}
	if opts.repair {
		// Repairs write to .coffer/undo: never through a planted link.
		if err := keys.CheckReserved(mopts.backing); err != nil {
			return withHints(fmt.Errorf("refusing to repair: %w", err),
				"coffer fsck without --repair lists every such entry")
		}
	}

	lock, err := lockVolume(mopts.backing)
	var busy *volumeBusyError
	switch {
	case errors.As(err, &busy) && opts.repair:
		return withHints(fmt.Errorf("refusing to repair: %w", busy),
			"unmount it first (coffer unmount MOUNTPOINT), then run coffer fsck --repair again")
	case errors.As(err, &busy):
		fmt.Fprintf(a.stderr, "coffer: warning: %v: blocks written during the check may be reported as damaged\n", busy)
	case err != nil:
		return err
	default:
		defer lock.Close()
		testPause("fsck-locked")
	}

	secret, err := mountPassphrase(a, mopts, cfg)
	if err != nil {
		return err
	}
	ring, _, err := unlock(ctx, a, mopts, cfg, secret, nil)
	if err != nil {
		return err
	}

	p := newProgress(a.stderr)
	report, err := check.Run(mopts.backing, check.Options{
		VolumeID: cfg.VolumeID, Keys: ring, EncryptedNames: cfg.EncryptedNames(),
		Repair: opts.repair, Progress: p.update,
	})
	p.done()
	if err != nil {
		return err
	}
	if opts.json {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(report)
	} else {
		err = printReport(a.stdout, report, opts.repair)
	}
	if err != nil {
		return err
	}
	return damageOf(report, opts.repair, mopts.backing)
}

// damageOf returns a damageError if the report leaves damage.
func damageOf(r *check.Report, repair bool, backing string) error {
	if !r.Damaged() {
		return nil
	}
	left, repairable := 0, 0
	for _, p := range r.Problems {
		if p.Left() {
			left++
			if p.Repair != check.RepairNone {
				repairable++
			}
		}
	}
	err := &damageError{problems: left}
	if repairable > 0 && !repair {
		return withHints(err, fmt.Sprintf("%d can be repaired: unmount the volume and run 'coffer fsck %s --repair'",
			repairable, shellQuote(backing)))
	}
	return withHints(err, "restore the files named above from a backup; a directory record or sidecar "+
		"named above comes back from a backup of the backing directory")
}

// printReport writes the report as text: one line per problem, then a
// summary.
func printReport(w io.Writer, r *check.Report, repair bool) error {
	repaired := 0
	for _, p := range r.Problems {
		where := p.Backing
		switch {
		case p.Backing == ".":
			where = "root directory (.)"
		case p.Path == p.Backing, p.Kind == check.KindReserved:
		case p.Path == "":
			where = fmt.Sprintf("%s (no path in the mount: a name does not decrypt)", p.Backing)
		default:
			where = fmt.Sprintf("%s (%s)", p.Path, p.Backing)
		}
		switch {
		case p.Block >= 0 && p.LastBlock > p.Block:
			where += fmt.Sprintf(": blocks %d to %d", p.Block, p.LastBlock)
		case p.Block >= 0:
			where += fmt.Sprintf(": block %d", p.Block)
		}
		state := "repair: " + p.Repair
		if p.Repaired {
			state, repaired = "repaired: "+p.Repair, repaired+1
		}
		if _, err := fmt.Fprintf(w, "%s: %s: %s [%s]\n", where, p.Kind, p.Detail, state); err != nil {
			return err
		}
	}
	stale := fmt.Sprintf("%d undo record(s) of deleted files", len(r.StaleUndo))
	switch {
	case len(r.StaleUndo) == 0:
		stale = ""
	case r.Pruned:
		stale = "; removed " + stale
	default:
		stale = "; " + stale + " (--repair removes them)"
	}
	_, err := fmt.Fprintf(w, "checked %d files, %d blocks: %d problem(s), %d repaired%s\n",
		r.Files, r.Blocks, len(r.Problems), repaired, stale)
	return err
}

// progress shows the number of files checked on a terminal, at most ten
// times a second, and nothing elsewhere.
type progress struct {
	w    io.Writer
	on   bool
	last time.Time
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, on: isTerminal(w)}
}

func (p *progress) update(files int, backing string) {
	if !p.on || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	name := filepath.Base(backing)
	if len(name) > 40 {
		name = name[:37] + "..."
	}
	fmt.Fprintf(p.w, "\r\033[Kchecking: %d files, %s", files, name)
}

func (p *progress) done() {
	if p.on && !p.last.IsZero() {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
