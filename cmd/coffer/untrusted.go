package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/recovery"
)

// untrustedMaster turns a refusal to seal the ring to a master key whose
// entry is not authenticated (keys.ErrUntrustedMaster: a recovery entry
// without a valid tag, or not the one the sealed ring lists) into the command's error with hints, and records it
// in the audit log l as an integrity failure. l may be nil: the log of
// backing is then opened for the record, keyed with ring. untouched says
// that the command has written nothing yet. Other errors are returned as
// they are.
func untrustedMaster(ctx context.Context, a *app, l *audit.Log, backing string, vol keys.VolumeID,
	ring *keys.Ring, untouched bool, err error) error {
	var ee *keys.EntryError
	if !errors.As(err, &ee) {
		return err
	}
	if l == nil {
		var oerr error
		if l, oerr = openAudit(a, backing, vol); oerr != nil {
			a.log.Error().Err(oerr).Msg("failed to record the refused master key in the audit log")
		} else {
			defer closeAudit(a, l)
			l.SetKeys(ring)
		}
	}
	recordAudit(ctx, a, l, audit.Event{Type: audit.EventIntegrity, Master: ee.Master.ID, Err: err,
		Detail: map[string]string{"kind": ee.Master.Kind, "file": keys.ConfigName}})

	b, id := shellQuote(backing), ee.Master.ID
	what := "refused to seal the ring to a master key that no key holder wrote"
	if untouched {
		what += ", nothing was changed"
	}
	if ee.Changed {
		again := "coffer master add " + b + " URI"
		if ee.Master.Kind == recovery.Kind {
			again = "coffer recovery new " + b
		}
		return withHints(fmt.Errorf("%s: %w", what, err),
			"the last rotation sealed the ring to another entry under the ID "+id+"; if you "+
				"did not change it, someone who can write "+b+" edited volume.json (a tag "+
				"does not help: the holder of a removed master key can make one until the "+
				"ring is rotated)",
			"put the entry back from a backup of volume.json, or remove it (coffer master "+
				"remove "+b+" "+id+") and enrol the key again ("+again+"), then check who "+
				"can write there")
	}
	return withHints(fmt.Errorf("%s: %w", what, err),
		"if "+id+" is a recovery key you made (with a coffer older than entry tags): rotate "+
			"with it at hand, which proves the entry by opening it (coffer rotate "+b+
			" --recovery-key FILE), or replace it: coffer recovery new "+b+
			", then coffer master remove "+b+" "+id,
		"if "+id+" is a master key an earlier rotation skipped (its copy holds an older "+
			"ring): rotate without it (--skip-master "+id+"), then remove it and add it again",
		"if you did not add it, someone who can write "+b+" edited volume.json: remove it "+
			"(coffer master remove "+b+" "+id+") and check who can write there")
}

// warnUntrustedRecovery logs a warning for each recovery master key of cfg
// whose entry ring.CheckEntry refuses, so that the mount's log says
// ahead of time what the next coffer rotate will refuse.
func warnUntrustedRecovery(a *app, backing string, cfg *keys.Config, ring *keys.Ring) {
	for _, m := range cfg.Masters {
		if m.Kind != recovery.Kind {
			continue
		}
		if err := ring.CheckEntry(cfg.VolumeID, m); err != nil {
			a.log.Warn().Err(err).Str("backing", backing).Str("master", m.ID).
				Msg("coffer rotate will refuse this recovery key's entry: replace it (coffer " +
					"recovery new, then coffer master remove) or rotate once with --recovery-key")
		}
	}
}
