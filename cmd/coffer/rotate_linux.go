package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/fs/reencrypt"
	"github.com/cofferfs/coffer/fs/rewrap"
	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/recovery"
)

type rotateOptions struct {
	unlockOptions
	skip              []string
	purge             bool
	replace           string // --master OLD=NEWURI
	newPassphraseFile string
	mountWait         time.Duration
	ifDue             bool
	reencrypt         bool
}

func newRotateCommand(a *app) *cobra.Command {
	var opts rotateOptions
	cmd := &cobra.Command{
		Use:   "rotate BACKING",
		Short: "Rotate the key ring, or replace one master key",
		Long: `Rotate the key ring of the volume in BACKING, online: add a new ring key and
make it the primary, seal the ring to every master key, re-wrap the data key
of every file and the name key of every directory with it (header slot
writes only, never content), retire the old keys, and purge them once a full
scan proves that no header or directory record needs them.

Every master key is opened first and must unseal its copy of the ring; a
passphrase master asks for its passphrase (or reads --passphrase-file). A
master key that cannot be reached stops the rotation before anything
changes, unless --skip-master names it: it then keeps its copy of the old
ring, which still opens the volume (rolling forward to the new ring) until
the old keys are purged. With a skipped master key the old keys are kept,
retired, so that it keeps working; --purge purges them anyway and cuts it
off. Run rotate again when it is reachable. A recovery key is sealed to the
public key in its entry, unopened; rotate refuses (nothing changed) an entry
whose tag does not prove that a holder of the ring wrote it.

A running mount, here or on another host sharing the backing directory,
follows the rotation by itself. Interrupted (a crash, kill -9, a full disk),
the rotation resumes where it stopped when rotate runs again.

With --reencrypt (offline: refused while the volume is mounted anywhere),
rotate also gives every file and symlink a new data key under the new ring
key and rewrites its content, each file into a new file renamed over the
original, before retiring and purging the old keys. Directory name keys are
re-wrapped only. Files with hard links are refused (listed). Interrupted,
it resumes with the files not yet done.

With --master OLD=NEWURI, rotate replaces the master key OLD (an ID or URI)
by a new one instead, in one atomic config write; no file is touched.`,
		Example: `  coffer rotate /srv/app.enc
  coffer rotate /srv/app.enc --skip-master 1a2b3c4d
  coffer rotate /srv/app.enc --reencrypt
  coffer rotate /srv/app.enc --master 1a2b3c4d=file:///etc/coffer/new.key`,
		Args: exactArgs("BACKING"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing = args[0]
			return runRotate(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.passphraseFile, "passphrase-file", "",
		"read the passphrase of passphrase master keys from this file (mode 0600)")
	f.StringSliceVar(&opts.skip, "skip-master", nil,
		"rotate without this master key (ID or URI; repeatable): it keeps the old ring")
	f.BoolVar(&opts.purge, "purge", false,
		"purge the retired keys even when a master key was skipped (it loses access)")
	f.StringVar(&opts.replace, "master", "",
		"replace master key OLD (ID or URI) by NEWURI: OLD=NEWURI; no file is touched")
	f.StringVar(&opts.with, "with", "", "with --master: unlock with this master key (ID or URI)")
	f.StringVar(&opts.newPassphraseFile, "new-passphrase-file", "",
		"with --master OLD=passphrase:, read the new passphrase from this file (mode 0600)")
	f.BoolVar(&opts.reencrypt, "reencrypt", false,
		"also give every file a new data key and rewrite its content (offline: the volume "+
			"must not be mounted; see docs/rotation.md)")
	f.BoolVar(&opts.ifDue, "if-due", false,
		"rotate only if the primary key is older than the volume's --max-key-age policy "+
			"(or a rotation is unfinished); for timers")
	f.DurationVar(&opts.mountWait, "mount-wait", 30*time.Second,
		"how long to wait for running mounts to load the new ring before purging old keys")
	opts.masterFlags.add(f)
	return cmd
}

// runRotate rotates the ring, or replaces a master key with --master.
func runRotate(ctx context.Context, a *app, opts rotateOptions) error {
	if opts.reencrypt && opts.replace != "" {
		return usageErrorf("--reencrypt and --master cannot be combined")
	}
	cfg, err := readConfigToWrite(opts.backing)
	if err != nil {
		return err
	}
	if opts.replace != "" {
		return runReplaceMaster(ctx, a, cfg, opts)
	}
	if !opts.reencrypt {
		if st, err := keys.ReadReencrypt(opts.backing); err != nil || st != nil {
			if err == nil {
				err = withHints(errors.New("a re-encryption of this volume was interrupted"),
					"finish it: coffer rotate "+shellQuote(opts.backing)+" --reencrypt")
			}
			return err
		}
	}
	if opts.ifDue && (cfg.Policy == nil || cfg.Policy.MaxKeyAgeDays == 0) {
		return withHints(usageErrorf("--if-due needs a maximum key age"),
			"set one: coffer config "+shellQuote(opts.backing)+" --max-key-age 90d")
	}
	skip := map[string]bool{}
	for _, s := range opts.skip {
		id, err := masterID(cfg, s)
		if err != nil {
			return err
		}
		skip[id] = true
	}

	// A recovery key's private half is on paper: its copy is sealed to
	// the public key in the config, without a prompt.
	sealOnly := func(err error) bool { return errors.Is(err, recovery.ErrNoPrivateKey) }
	ring, opened, err := keys.OpenMasters(ctx, cfg, masterkey.Opener(ctx, openOptions(a, cfg,
		opts.unlockOptions)), skip, sealOnly)
	if err != nil {
		return openMastersError(opts.backing, err)
	}
	defer keys.WipeMasters(opened)
	if opts.ifDue && !rotationDue(a.stderr, cfg, ring, time.Now()) {
		fmt.Fprintf(a.stdout, "rotation of volume %s not due: the primary ring key is "+
			"younger than %d days\n", cfg.VolumeID, cfg.Policy.MaxKeyAgeDays)
		return nil
	}
	// A recovery key is sealed to without being opened: its entry must be
	// one a holder of the ring wrote, checked before anything is written.
	if err := keys.VerifySealOnly(cfg.VolumeID, ring, opened); err != nil {
		return untrustedMaster(ctx, a, nil, opts.backing, cfg.VolumeID, ring, true, err)
	}
	testPause("opened")
	total := 0
	if opts.reencrypt {
		vlock, err := lockOffline(opts.backing, "re-encrypt")
		if err != nil {
			return err
		}
		defer vlock.Close()
		if total, err = refuseHardLinks(opts.backing); err != nil {
			return err
		}
	}
	// Taken once the master keys opened, so that a refusal before leaves
	// no lock file behind.
	unlock, err := lockRotation(opts.backing)
	if err != nil {
		return err
	}
	defer unlock()
	// A master key added (or a ring committed) between reading the config
	// and taking the lock would not be in opened: its copy would be left
	// behind and cut off by the purge. With the lock held, no other
	// command can add one any more (keys.AddMaster takes it too).
	if err := sameMasters(opts.backing, cfg, skip); err != nil {
		return err
	}
	testPause("locked")
	for id := range skip {
		fmt.Fprintf(a.stderr, "coffer: warning: master key %s is skipped: it keeps the ring of "+
			"generation %d, which still opens the volume until the old ring keys are purged; "+
			"they are kept retired unless --purge; run 'coffer rotate %s' again once it is "+
			"reachable\n", id, cfg.Ring.Generation, shellQuote(opts.backing))
		// A skipped entry is not proven; one that differs from what the
		// last rotation sealed keeps its tag and its listed digest, so the
		// next rotation that reaches it refuses it: say so now.
		if m, ok := cfg.Master(id); ok && ring.Listed(id) {
			if err := ring.CheckEntry(cfg.VolumeID, m); err != nil {
				fmt.Fprintf(a.stderr, "coffer: warning: %v; its tag is not renewed, and the "+
					"next rotation that reaches it will refuse it\n", err)
			}
		}
	}

	alog, err := openAudit(a, opts.backing, cfg.VolumeID)
	if err != nil {
		return err
	}
	defer closeAudit(a, alog)
	alog.SetKeys(ring)

	r := &rotation{a: a, ctx: ctx, opts: opts, cfg: cfg, ring: ring, opened: opened,
		skip: skip, alog: alog, kill: killPoints(), total: total}
	err = r.run()
	if err != nil {
		recordAudit(ctx, a, alog, audit.Event{Type: audit.EventRotationFinished,
			RingKey: ring.Primary().ID, Err: err})
	}
	return err
}

// lockRotation takes the rotation lock (keys.LockRotation) for the whole
// rotation: two rotations re-wrapping the same headers at once could tear a
// slot while the other purges the key of the slot that still works, and a
// master key added during a rotation would keep a copy of a ring that the
// rotation purges.
func lockRotation(backing string) (func(), error) {
	unlock, err := keys.LockRotation(backing)
	if errors.Is(err, keys.ErrRotationRunning) {
		return nil, withHints(errors.New("another coffer rotate (or a master add) is running "+
			"on this volume"), "wait for it to finish; if it was killed, run coffer rotate "+
			"again to resume it")
	}
	return unlock, err
}

// sameMasters checks, under the rotation lock, that the config still has
// the ring generation and master keys of cfg, from which the master keys
// were opened; only master keys removed meanwhile are let through.
func sameMasters(backing string, cfg *keys.Config, skip map[string]bool) error {
	now, err := readConfig(backing)
	if err != nil {
		return err
	}
	hint := "another command changed the volume's master keys while rotate opened them; " +
		"nothing was changed: run coffer rotate again"
	if now.VolumeID != cfg.VolumeID || now.Ring.Generation != cfg.Ring.Generation {
		return withHints(fmt.Errorf("failed to start rotation: %w: the ring is at generation "+
			"%d, the opened one at %d", keys.ErrConfigChanged, now.Ring.Generation,
			cfg.Ring.Generation), hint)
	}
	for _, m := range now.Masters {
		if _, ok := cfg.Master(m.ID); !ok && !skip[m.ID] {
			return withHints(fmt.Errorf("failed to start rotation: %w: master key %s was "+
				"added after the master keys were opened", keys.ErrConfigChanged, m.ID), hint)
		}
	}
	return nil
}

// rotationDue reports whether --if-due should rotate: the ring records an
// unfinished rotation, or the policy finds the primary key too old. The
// age comes from the unsealed ring: volume.json's copy of the creation
// times is public and editable, and a date moved forward there would keep
// the timer from ever rotating. A copy that disagrees is reported; the
// older date counts, so an edited date cannot prevent a rotation. The
// policy itself (the maximum age) is not sealed: it comes from volume.json,
// and whoever can write the backing directory can raise or remove it and
// so stop --if-due (docs/limitations.md); status shows the policy in
// force.
func rotationDue(w io.Writer, cfg *keys.Config, ring *keys.Ring, now time.Time) bool {
	p := ring.Primary()
	for _, k := range cfg.Ring.Keys {
		if k.ID == p.ID && !k.Created.Equal(p.Created) {
			fmt.Fprintf(w, "coffer: warning: volume.json says ring key %d was created "+
				"%s, the sealed ring says %s: someone edited volume.json; the policy is "+
				"checked against the sealed date\n", p.ID, k.Created.Format(time.RFC3339),
				p.Created.Format(time.RFC3339))
		}
	}
	return ring.Rotating() != 0 || cfg.KeyDue(p.Created, now) || cfg.RotationDue(now)
}

// openOptions say how rotate opens master keys: passphrases from
// --passphrase-file or the terminal.
func openOptions(a *app, cfg *keys.Config, o unlockOptions) masterkey.Options {
	mopts := o.masterFlags.options()
	mopts.Backing = o.backing
	mopts.PIN = pinPrompt(a)
	mopts.RecoveryKeyText = recoveryKeyReader(a)
	mopts.Passphrase = func(_ context.Context, req masterkey.PassphraseRequest) (*keys.Secret, error) {
		if o.passphraseFile != "" {
			return readPassphraseFile(o.passphraseFile)
		}
		return promptPassphrase(a, fmt.Sprintf("Passphrase for volume %s (master key %s): ",
			cfg.VolumeID, req.MasterID), false)
	}
	return mopts
}

func openMastersError(backing string, err error) error {
	var merr *keys.MasterError
	if errors.As(err, &merr) {
		return withHints(fmt.Errorf("failed to open every master key: %w", err),
			"the ring is sealed to every master key, so each one must be reachable; to "+
				"rotate without this one: coffer rotate "+shellQuote(backing)+
				" --skip-master "+merr.Master.ID)
	}
	return err
}

// rotation is one run of coffer rotate.
type rotation struct {
	a      *app
	ctx    context.Context
	opts   rotateOptions
	cfg    *keys.Config
	ring   *keys.Ring
	opened []keys.Opened
	skip   map[string]bool // master keys skipped (--skip-master)
	alog   *audit.Log
	kill   func()
	// total counts the backing files, for --reencrypt's progress.
	total int
	// reencrypted is what --reencrypt did, once done.
	reencrypted *reencrypt.Result
}

// run adds the new key (or resumes), re-wraps, retires and purges.
func (r *rotation) run() error {
	target, err := r.begin()
	if err != nil {
		return err
	}
	r.kill()
	if r.opts.reencrypt {
		if err := r.reencrypt(target, r.total); err != nil {
			return err
		}
	}

	for pass := 1; ; pass++ {
		res, err := r.scan(target, pass)
		if err != nil {
			return err
		}
		if pass == 1 {
			if err := r.retire(target); err != nil {
				return err
			}
			// No mount may wrap with an old key once the proof pass
			// has passed it: wait until every mount uses the new ring.
			if err := r.waitMounts(); err != nil {
				return err
			}
			continue // the next pass is the proof
		}
		if res.Rewrapped == 0 && res.Wiped == 0 {
			return r.finish(target, res)
		}
		if pass >= 5 {
			return fmt.Errorf("failed to finish rotation: files on old keys keep appearing "+
				"after %d passes; run coffer rotate again", pass)
		}
	}
}

// begin makes a new primary key and commits it, or finds the one of an
// interrupted rotation. Only the ring, sealed to the master keys, says
// whether a rotation is in progress and to which key: .coffer/rotation.json
// is written by whoever can write the backing directory, and a planted one
// naming the current primary would make rotate "resume" a rotation that
// changes no key.
func (r *rotation) begin() (uint32, error) {
	st, err := keys.ReadRotation(r.opts.backing)
	if err != nil {
		return 0, fmt.Errorf("failed to read rotation state: %w", err)
	}
	if target := r.ring.Rotating(); target != 0 {
		return target, r.resume(target, st)
	}
	if st != nil {
		fmt.Fprintf(r.a.stderr, "coffer: warning: %s names ring key %d, but the ring records "+
			"no rotation in progress: starting a new rotation (the file was edited or planted, "+
			"or left by a rotation that stopped before its first commit or after its last, "+
			"or by a coffer older than the ring's record)\n",
			filepath.Join(keys.DirName, keys.RotationName), st.Target)
	}

	var retire []uint32
	for _, k := range r.ring.Keys() {
		if k.State != keys.StateRetired {
			retire = append(retire, k.ID)
		}
	}
	added, err := r.ring.AddKey()
	if err != nil {
		return 0, err
	}
	// Recorded before the config names the key, so that a crash after
	// the commit resumes with it.
	err = keys.WriteRotation(r.opts.backing, keys.Rotation{Target: added.ID, Retire: retire,
		Started: added.Created})
	if err != nil {
		return 0, err
	}
	r.kill()
	if err := r.ring.SetPrimary(added.ID); err != nil {
		return 0, err
	}
	if err := r.ring.SetRotating(added.ID); err != nil {
		return 0, err
	}
	if err := r.commit(); err != nil {
		return 0, err
	}
	recordAudit(r.ctx, r.a, r.alog, audit.Event{Type: audit.EventRotationStarted,
		RingKey: added.ID, Detail: map[string]string{"replaces": ids(retire),
			"sealed_to": r.sealedTo()}})
	r.a.log.Info().Uint32("ring_key", added.ID).Msg("rotation started")
	return added.ID, nil
}

// resume continues the rotation to target that the ring records, st the
// state file as read (nil when missing), which is rewritten if it names
// another key: it is informational only.
func (r *rotation) resume(target uint32, st *keys.Rotation) error {
	if st == nil || st.Target != target {
		fmt.Fprintf(r.a.stderr, "coffer: warning: the ring records a rotation to ring key %d "+
			"in progress, but %s is missing or names another key: resuming the rotation the "+
			"ring records\n", target, filepath.Join(keys.DirName, keys.RotationName))
		started := time.Now().UTC()
		for _, k := range r.ring.Keys() {
			if k.ID == target {
				started = k.Created
			}
		}
		st = &keys.Rotation{Target: target, Started: started}
		if err := keys.WriteRotation(r.opts.backing, *st); err != nil {
			return err
		}
	}
	fmt.Fprintf(r.a.stderr, "coffer: resuming the rotation to ring key %d started %s\n",
		target, st.Started.Format("2006-01-02 15:04:05Z07:00"))
	return nil
}

// sealedTo lists the master keys each commit seals the ring to, for the
// audit records that follow a commit: a master key put back into
// volume.json after its removal then shows in the trail, whichever run of
// the rotation sealed to it. A master key that only seals is named with the
// fingerprint of its public key (ID:FINGERPRINT, for a recovery key the one
// printed with it), so that a public key swapped under a known ID shows too.
func (r *rotation) sealedTo() string {
	v := make([]string, 0, len(r.opened))
	for _, o := range r.opened {
		if _, ok := r.cfg.Master(o.Entry.ID); ok {
			v = append(v, sealedName(o))
		}
	}
	slices.Sort(v)
	return strings.Join(v, ",")
}

// sealedName names the opened master key o in sealedTo.
func sealedName(o keys.Opened) string {
	if fp, ok := recovery.EntryFingerprint(o.Entry); ok && o.SealOnly {
		return o.Entry.ID + ":" + fp
	}
	return o.Entry.ID
}

// sealedOnlyLine returns the line rotate prints about the master keys it
// sealed to without opening them, "" when there are none.
func (r *rotation) sealedOnlyLine() string {
	var v []string
	for _, o := range r.opened {
		if _, ok := r.cfg.Master(o.Entry.ID); ok && o.SealOnly {
			name := o.Entry.ID + " (" + o.Entry.Kind + ")"
			if fp, ok := recovery.EntryFingerprint(o.Entry); ok {
				name = o.Entry.ID + " (recovery key " + fp + ")"
			}
			v = append(v, name)
		}
	}
	if len(v) == 0 {
		return ""
	}
	slices.Sort(v)
	return "sealed the new ring, without opening them, to " + strings.Join(v, ", ") +
		": check that each is a key you hold (the fingerprint is printed with the recovery key)"
}

// commit seals the ring to every opened master key and writes the config.
func (r *rotation) commit() error {
	cfg, err := keys.CommitRing(r.ctx, r.opts.backing, r.cfg.Ring.Generation, r.ring, r.opened,
		r.skip)
	if err != nil {
		if errors.Is(err, keys.ErrUntrustedMaster) {
			return untrustedMaster(r.ctx, r.a, r.alog, r.opts.backing, r.cfg.VolumeID, r.ring,
				false, err)
		}
		if errors.Is(err, keys.ErrConfigChanged) {
			return withHints(fmt.Errorf("failed to write the new ring: %w", err),
				"another command changed the volume meanwhile: run coffer rotate again")
		}
		return fmt.Errorf("failed to write the new ring: %w", err)
	}
	r.cfg = cfg
	return nil
}

// scan runs one re-wrap pass with a progress display.
func (r *rotation) scan(target uint32, pass int) (*rewrap.Result, error) {
	total, err := rewrap.Count(r.opts.backing)
	if err != nil {
		return nil, fmt.Errorf("failed to count files: %w", err)
	}
	what := "re-wrapping"
	if pass > 1 {
		what = "checking"
	}
	p := newBarProgress(r.a.stderr, what, total)
	res, err := rewrap.Run(r.ctx, r.opts.backing, rewrap.Options{
		VolumeID:   r.cfg.VolumeID,
		Keys:       r.ring,
		Target:     target,
		Progress:   p.update,
		AfterWrite: r.kill,
		Logger:     r.a.log,
	})
	p.done()
	if err != nil {
		return nil, fmt.Errorf("failed to re-wrap keys: %w", err)
	}
	recordAudit(r.ctx, r.a, r.alog, audit.Event{Type: audit.EventRotationProgress,
		RingKey: target, Count: uint64(res.Rewrapped), Detail: map[string]string{
			"pass": strconv.Itoa(pass), "headers": strconv.Itoa(res.Headers),
			"wiped": strconv.Itoa(res.Wiped)}})
	if len(res.Failed) > 0 {
		return nil, failedFiles(res.Failed)
	}
	return res, nil
}

// failedFiles reports the files a pass could not re-wrap.
func failedFiles(fs []rewrap.Failure) error {
	var b strings.Builder
	for i, f := range fs {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(fs)-5)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %v", f.Path, f.Err)
	}
	return withHints(fmt.Errorf("failed to re-wrap %d files (no key was retired or purged): %s",
		len(fs), b.String()), "these files were unreadable before the rotation or are damaged; "+
		"restore them from a backup or delete them, then run coffer rotate again to finish")
}

// retire marks every key but target retired.
func (r *rotation) retire(target uint32) error {
	var done []uint32
	for _, k := range r.ring.Keys() {
		if k.ID != target && k.State != keys.StateRetired {
			if err := r.ring.Retire(k.ID); err != nil {
				return err
			}
			done = append(done, k.ID)
		}
	}
	if len(done) == 0 {
		return nil
	}
	if err := r.commit(); err != nil {
		return err
	}
	for _, id := range done {
		recordAudit(r.ctx, r.a, r.alog, audit.Event{Type: audit.EventKeyRetired, RingKey: id,
			Detail: map[string]string{"sealed_to": r.sealedTo()}})
	}
	r.kill()
	return nil
}

// waitMounts waits until every running mount of the volume (here or on
// another host) has recorded that it uses the config's ring generation.
func (r *rotation) waitMounts() error {
	gen := r.cfg.Ring.Generation
	host, _ := os.Hostname()
	deadline := time.Now().Add(r.opts.mountWait)
	for {
		acks, err := keys.MountAcks(r.opts.backing)
		if err != nil {
			return err
		}
		var behind []string
		for _, a := range acks {
			if a.Generation >= gen {
				continue
			}
			if why := staleAck(a, r.opts.backing, host); why != "" {
				// Left by a mount that died, or its PID reused.
				_ = keys.RemoveAck(r.opts.backing, a.Name)
				fmt.Fprintf(r.a.stderr, "coffer: warning: ignored and removed the stale mount "+
					"record %s: %s\n", a.Name, why)
				continue
			}
			behind = append(behind, fmt.Sprintf("%s pid %d (generation %d)", a.Host, a.PID,
				a.Generation))
		}
		if len(behind) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return withHints(fmt.Errorf("failed to finish rotation: every file is re-wrapped "+
				"and the old keys are retired, but not purged: mounts still use an older ring: %s",
				strings.Join(behind, ", ")), "check those mounts; once they follow (or, if "+
				"they are gone, after removing their file in "+
				shellQuote(filepath.Join(r.opts.backing, keys.DirName, keys.MountsName))+
				"), run coffer rotate again to finish")
		}
		time.Sleep(100 * time.Millisecond) // polling files that other hosts write
	}
}

// finish purges the retired keys, which the last pass proved unused, and
// ends the rotation.
func (r *rotation) finish(target uint32, res *rewrap.Result) error {
	var purged []uint32
	if len(r.skip) == 0 || r.opts.purge {
		for _, k := range r.ring.Keys() {
			if k.State != keys.StateRetired {
				continue
			}
			// Cannot happen after a clean pass: every slot under a retired
			// key, working or not, was re-wrapped or wiped.
			if n := res.ByKey[k.ID]; n > 0 {
				return fmt.Errorf("failed to purge ring key %d: %d headers still use it", k.ID, n)
			}
			if n := res.Slots[k.ID]; n > 0 {
				return fmt.Errorf("failed to purge ring key %d: %d key slots still name it",
					k.ID, n)
			}
			if err := r.ring.Purge(k.ID); err != nil {
				return err
			}
			purged = append(purged, k.ID)
		}
	}
	// The same commit ends the rotation in the ring: from now on a
	// rotation.json naming target is stale, and rotate starts anew.
	if err := r.ring.SetRotating(0); err != nil {
		return err
	}
	if len(purged) > 0 {
		testPause("purge")
	}
	if err := r.commit(); err != nil {
		return err
	}
	r.kill()
	for _, id := range purged {
		recordAudit(r.ctx, r.a, r.alog, audit.Event{Type: audit.EventKeyPurged, RingKey: id,
			Detail: map[string]string{"sealed_to": r.sealedTo()}})
	}
	if r.opts.reencrypt {
		// Before the rotation state: a crash between the two resumes the
		// rotation, which finds every file done.
		if err := keys.ClearReencrypt(r.opts.backing); err != nil {
			return err
		}
		r.kill()
	}
	if err := keys.ClearRotation(r.opts.backing); err != nil {
		return err
	}
	recordAudit(r.ctx, r.a, r.alog, audit.Event{Type: audit.EventRotationFinished,
		RingKey: target, Count: uint64(res.Headers)})

	fmt.Fprintf(r.a.stdout, "rotated volume %s to ring key %d (generation %d): %d headers and "+
		"directory records on it", r.cfg.VolumeID, target, r.cfg.Ring.Generation, res.Headers)
	if re := r.reencrypted; re != nil {
		fmt.Fprintf(r.a.stdout, "; re-encrypted %d files with new data keys (%d already done)",
			re.Rewritten, re.Skipped)
	}
	if len(purged) > 0 {
		fmt.Fprintf(r.a.stdout, "; purged %s", ids(purged))
	}
	fmt.Fprintln(r.a.stdout)
	if line := r.sealedOnlyLine(); line != "" {
		fmt.Fprintln(r.a.stdout, line)
	}
	if len(r.skip) > 0 && !r.opts.purge {
		fmt.Fprintf(r.a.stderr, "coffer: warning: old ring keys kept (retired) for the skipped "+
			"master key; run 'coffer rotate %s' when it is reachable\n", shellQuote(r.opts.backing))
	}
	return nil
}

func ids(v []uint32) string {
	s := make([]string, len(v))
	for i, id := range v {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(s, ",")
}

// testPause is the test hook of the concurrency tests: with
// COFFER_TEST_PAUSE=NAME:DIR in the environment, the call testPause(NAME)
// writes a line to the named pipe DIR/paused (waiting until the test reads
// it), then reads the named pipe DIR/resume until the test has opened it
// for writing and closed it. Without it, or for another name, a no-op.
func testPause(name string) {
	at, dir, ok := strings.Cut(os.Getenv("COFFER_TEST_PAUSE"), ":")
	if !ok || at != name {
		return
	}
	w, err := os.OpenFile(filepath.Join(dir, "paused"), os.O_WRONLY, 0)
	if err != nil {
		return
	}
	_, _ = fmt.Fprintln(w, "paused at", name)
	w.Close()
	if r, err := os.Open(filepath.Join(dir, "resume")); err == nil {
		_, _ = io.Copy(io.Discard, r)
		r.Close()
	}
}
