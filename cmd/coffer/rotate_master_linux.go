package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// runReplaceMaster replaces one master key by a new one (--master
// OLD=NEWURI): it unlocks the volume, enrolls the new key and swaps them in
// one config write.
func runReplaceMaster(ctx context.Context, a *app, cfg *keys.Config, opts rotateOptions) error {
	oldRef, uri, ok := strings.Cut(opts.replace, "=")
	if !ok || oldRef == "" || uri == "" {
		return withHints(usageErrorf("--master wants OLD=NEWURI, got %q", opts.replace),
			"OLD is a master key ID or URI ('coffer master list' shows them)")
	}
	if len(opts.skip) > 0 || opts.purge {
		return usageErrorf("--master replaces a master key and touches no ring key: " +
			"--skip-master and --purge do not apply")
	}
	old, err := masterID(cfg, oldRef)
	if err != nil {
		return err
	}
	add := masterAddOptions{unlockOptions: opts.unlockOptions, uri: uri,
		newPassphraseFile: opts.newPassphraseFile}
	ref, err := add.check()
	if err != nil {
		return err
	}
	if err := checkReplaceUnattended(cfg, old, ref.Kind, opts.backing, uri); err != nil {
		return err
	}
	if err := add.checkPlaces(a); err != nil {
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

	e, err := masterkey.Enroll(ctx, ref.URI, add.enrollOptions(a))
	if err != nil {
		return fmt.Errorf("failed to enroll master key %s: %w", ref, err)
	}
	defer wipeMasters([]keys.Enrollment{e})
	// Checked again under the config lock: a master remove running
	// meanwhile may have taken the other unattended key away.
	recheck := func(c *keys.Config, o keys.MasterEntry, kind string) error {
		return checkReplaceUnattended(c, o.ID, kind, opts.backing, uri)
	}
	added, err := keys.ReplaceMaster(ctx, opts.backing, ring, old, e,
		keys.ReplaceOptions{Logger: a.log, Check: recheck})
	recordAudit(ctx, a, alog, audit.Event{Type: audit.EventMasterReplaced, Master: added.ID,
		Err: err, Detail: map[string]string{"old": old, "kind": e.Kind}})
	if err != nil {
		return addError(opts.backing, err)
	}
	fmt.Fprintf(a.stdout, "replaced master key %s by %s (%s %s) on volume %s, unlocked with %s\n",
		old, added.ID, added.Kind, keys.RedactURI(added.URI), cfg.VolumeID, with.ID)
	return nil
}

// checkReplaceUnattended refuses to replace old, the last master key of cfg
// that unlocks without a person, by one of a kind a person must type. The
// way there is explicit: master add, then master remove
// --allow-interactive-only.
func checkReplaceUnattended(cfg *keys.Config, old, kind, backing, uri string) error {
	if !attendedKinds[kind] {
		return nil
	}
	after := *cfg
	after.Masters = nil
	var oldEntry keys.MasterEntry
	for _, m := range cfg.Masters {
		if m.ID == old {
			oldEntry = m
			m = keys.MasterEntry{ID: "(new)", Kind: kind}
		}
		after.Masters = append(after.Masters, m)
	}
	err := checkUnattended(&after, oldEntry)
	if err == nil {
		return nil
	}
	return withHints(fmt.Errorf("failed to replace master key: %w", err),
		"to leave only keys a person types, add it with 'coffer master add "+shellQuote(backing)+
			" "+shellQuote(uri)+"', then run 'coffer master remove "+shellQuote(backing)+" "+old+
			" --allow-interactive-only'")
}
