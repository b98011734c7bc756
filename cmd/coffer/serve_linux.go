package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	cofferfs "github.com/cofferfs/coffer/fs"
	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/keyfile"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/recovery"
)

// serve unlocks the volume, mounts it, reports readiness on n and serves
// until the mount goes away. SIGINT, SIGTERM and SIGHUP unmount. It wipes
// secret.
func serve(ctx context.Context, a *app, opts mountOptions, cfg *keys.Config,
	secret *keys.Secret, n notifier) error {
	// Caught from now on, so that a signal during the unlock cannot leave a
	// mount without its process.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// Sent last, once the audit log is closed and the volume unlocked: a
	// service manager or test waiting for it finds the process done with
	// the backing directory.
	unmounted := false
	defer func() {
		if unmounted {
			notifyManager(a, "STATUS=unmounted")
		}
	}()

	lock, err := lockVolumeMode(opts.backing, opts.shared)
	if err != nil {
		secret.Wipe()
		return sharedHint(err, opts.shared)
	}
	defer lock.Close()

	// No mount without its audit trail: the log must open first, and not
	// under the mount point, where the mount would write it through itself.
	if err := checkAuditOutside(opts, cfg.VolumeID); err != nil {
		secret.Wipe()
		return err
	}
	alog, err := openAudit(a, opts.backing, cfg.VolumeID, opts.mountPoint)
	if err != nil {
		secret.Wipe()
		return err
	}
	defer closeAudit(a, alog)

	ring, used, err := unlockOrSignal(ctx, sigs, func(ctx context.Context) (*keys.Ring,
		keys.MasterEntry, error) {
		return unlock(ctx, a, opts, cfg, secret, unlockFailures(ctx, a, alog))
	})
	if err != nil {
		return err
	}
	alog.SetKeys(ring)
	recordRecoveryUse(ctx, a, alog, used)
	warnUntrustedRecovery(a, opts.backing, cfg, ring)
	integrity := alog.IntegrityRecorder(0)
	follower := keys.NewFollower(opts.backing, ring, a.log)
	srv, err := cofferfs.Mount(opts.backing, opts.mountPoint, cofferfs.Options{
		VolumeID:     cfg.VolumeID,
		Keys:         follower, // follows rotations
		EncryptNames: cfg.EncryptedNames(),
		Logger:       a.log,
		ReadOnly:     opts.readOnly,
		AllowOther:   opts.allowOther,
		Debug:        opts.debug,
		NoExec:       opts.noExec,
		Shared:       opts.shared,
		Integrity:    integrity.Report,
	})
	mounted := audit.Event{Type: audit.EventMount, Master: used.ID, RingKey: ring.Primary().ID,
		Err: err, Detail: map[string]string{"kind": used.Kind, "mountpoint": opts.mountPoint,
			"read_only": strconv.FormatBool(opts.readOnly), "shared": strconv.FormatBool(opts.shared)}}
	recordAudit(ctx, a, alog, mounted)
	if err != nil {
		return mountError(opts, err)
	}

	if err := checkAnswers(opts.mountPoint); err != nil {
		_ = srv.Unmount()
		recordAudit(ctx, a, alog, audit.Event{Type: audit.EventUnmount, Master: used.ID, Err: err,
			Detail: map[string]string{"mountpoint": opts.mountPoint}})
		return err
	}
	// Recorded before reporting ready, so that "master list" right after
	// the mount shows it. Advisory: a failure costs only the record.
	if err := keys.RecordUse(opts.backing, used.ID, time.Now()); err != nil {
		a.log.Warn().Err(err).Msg("failed to record which master key unlocked the volume")
	}
	if mp, err := canonicalPath(opts.mountPoint); err == nil {
		follower.SetMountPoint(mp)
	}
	stopWatch := follower.Watch(ringWatchInterval)
	defer stopWatch()
	notifyManager(a, fmt.Sprintf("READY=1\nMAINPID=%d\nSTATUS=serving %s on %s",
		os.Getpid(), opts.backing, opts.mountPoint))
	n.ready()
	serveUntilUnmounted(a, srv, sigs)
	a.log.Info().Str("mountpoint", opts.mountPoint).Msg("unmounted")
	if opts.shared {
		if err := cofferfs.RemoveSharedUndo(opts.backing); err != nil {
			a.log.Warn().Err(err).Msg("failed to remove this mount's undo records; fsck --repair removes them")
		}
	}
	if err := integrity.Flush(context.WithoutCancel(ctx)); err != nil {
		a.log.Error().Err(err).Msg("failed to write integrity failure counts to the audit log")
	}
	recordAudit(context.WithoutCancel(ctx), a, alog, audit.Event{Type: audit.EventUnmount,
		Master: used.ID, Detail: map[string]string{"mountpoint": opts.mountPoint}})
	unmounted = true
	return nil
}

// sharedHint adds to a refused mount lock the way to serve one backing
// directory from several processes.
func sharedHint(err error, shared bool) error {
	var busy *volumeBusyError
	if shared || !errors.As(err, &busy) {
		return err
	}
	return withHints(err, "to serve one backing directory from several coffer processes at once "+
		"(hosts on shared storage), mount every one of them with --shared")
}

// ringWatchInterval is how often a mount checks whether a rotation changed
// the volume's ring (a stat of volume.json), besides before each new file.
const ringWatchInterval = time.Second

// checkAnswers asks the new mount for its file system statistics, a request
// the kernel passes to our server, and checks that the answer comes from a
// FUSE file system: the mount is ready for its users.
func checkAnswers(mountPoint string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(mountPoint, &st); err != nil {
		return fmt.Errorf("failed to check the new mount on %s: %w", mountPoint, err)
	}
	if st.Type != unix.FUSE_SUPER_MAGIC {
		return fmt.Errorf("failed to check the new mount on %s: it is not a FUSE file system (type %#x)",
			mountPoint, st.Type)
	}
	return nil
}

// notifyManager tells systemd, when it started us with $NOTIFY_SOCKET, how
// the mount is doing (Type=notify services). A failure is only logged: the
// mount works without it.
func notifyManager(a *app, state string) {
	if err := sdNotify(state); err != nil {
		a.log.Warn().Err(err).Msg("failed to notify systemd")
	}
}

// unlock opens the volume's ring with its master keys; secret, if not nil,
// is the passphrase for passphrase masters, or the recovery key text with
// --recovery-key -. It returns the ring and the master key that opened it,
// calls failed (if not nil) for each master key that did not, and wipes
// secret.
func unlock(ctx context.Context, a *app, opts mountOptions, cfg *keys.Config,
	secret *keys.Secret, failed func(keys.MasterEntry, error)) (*keys.Ring, keys.MasterEntry, error) {
	defer secret.Wipe()
	defer opts.pin.Wipe()
	uo := keys.UnlockOptions{Logger: a.log}
	if opts.master != "" {
		id, err := masterID(cfg, opts.master)
		if err != nil {
			return nil, keys.MasterEntry{}, err
		}
		uo.Only = id
	} else if opts.recoveryKey != "" {
		uo.Kind = recovery.Kind
	} else {
		uo.SkipKind = recovery.Kind
	}

	pass := func(context.Context, masterkey.PassphraseRequest) (*keys.Secret, error) {
		if secret.Len() == 0 {
			return nil, errNoTerminal
		}
		// The opener wipes what it gets: hand it a copy.
		return keys.SecretFromBytes(append([]byte(nil), secret.InsecureBytes()...)), nil
	}
	mopts := opts.masterFlags.options()
	mopts.Passphrase = pass
	mopts.PIN = parentPIN(a, opts)
	mopts.Backing = opts.backing
	mopts.NamedURI = namedURI(opts.master)
	if opts.recoveryKey == "-" {
		mopts.Passphrase = nil
		mopts.RecoveryKeyText = func(ctx context.Context) (*keys.Secret, error) {
			return pass(ctx, masterkey.PassphraseRequest{})
		}
	}
	open := masterkey.Opener(ctx, mopts)
	uo.Failed = warnRefused(a, failed)
	ring, used, err := keys.Unlock(ctx, cfg, open, uo)
	if err != nil {
		return nil, keys.MasterEntry{}, unlockError(opts, err)
	}
	return ring, used, nil
}

// unlockOrSignal runs unlock, giving up when a signal arrives on sigs. Opening
// a master key can block where no context reaches (a PIN pad, a token, a
// pipe handed as a secret file): the unlock is then left behind and the
// command ends, with nothing mounted.
func unlockOrSignal(ctx context.Context, sigs <-chan os.Signal,
	unlock func(context.Context) (*keys.Ring, keys.MasterEntry, error)) (*keys.Ring,
	keys.MasterEntry, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		ring *keys.Ring
		used keys.MasterEntry
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, u, err := unlock(ctx)
		done <- result{r, u, err}
	}()
	select {
	case r := <-done:
		return r.ring, r.used, r.err
	case sig := <-sigs:
		cancel()
		return nil, keys.MasterEntry{}, fmt.Errorf("interrupted by %v while unlocking the "+
			"volume: nothing was mounted", sig)
	}
}

// parentPIN returns a PINFunc that hands out the PIN the parent process read
// for the token labelled opts.pinToken, and asks on the terminal for any
// other token.
func parentPIN(a *app, opts mountOptions) masterkey.PINFunc {
	prompt := pinPrompt(a)
	return func(ctx context.Context, req masterkey.PINRequest) (*keys.Secret, error) {
		if opts.pin.Len() == 0 || req.Token != opts.pinToken {
			return prompt(ctx, req)
		}
		// The opener wipes what it gets: hand it a copy.
		return keys.SecretFromBytes(append([]byte(nil), opts.pin.InsecureBytes()...)), nil
	}
}

// unlockError adds advice to a failed unlock.
func unlockError(opts mountOptions, err error) error {
	var perm *keyfile.PermissionError
	if errors.As(err, &perm) {
		return hintOnce(fmt.Errorf("failed to unlock volume: %w", err), perm)
	}
	var hints []string
	if errors.Is(err, recovery.ErrTypo) {
		hints = append(hints, "check that group against the printed key and type it again")
	}
	if wrongKey(err) {
		hints = append(hints, "check the key file or passphrase; 'coffer status "+opts.backing+
			"' lists the volume's master keys")
	}
	if errors.Is(err, masterkey.ErrNoPassphrase) && opts.passphraseFile == "" {
		hints = append(hints, "to unlock with a passphrase, run on a terminal or pass --passphrase-file FILE")
	}
	return withHints(fmt.Errorf("failed to unlock volume: %w", err), hints...)
}

// wrongKey reports whether a master key was reached and refused the sealed
// ring, as opposed to every attempt failing before that (a missing token,
// an unreadable PIN file), where advice about wrong keys would mislead.
func wrongKey(err error) bool {
	var uerr *keys.UnlockError
	if !errors.As(err, &uerr) {
		return errors.Is(err, keys.ErrWrongKey)
	}
	for _, a := range uerr.Attempts {
		if errors.Is(a.Err, keys.ErrWrongKey) {
			return true
		}
	}
	return false
}

// mountError adds advice to a failed mount.
func mountError(opts mountOptions, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "allow_other"):
		return withHints(err, "as root, add the line 'user_allow_other' to "+fuseConfPath)
	case strings.Contains(msg, "/dev/fuse"):
		return withHints(err, "load the FUSE module (modprobe fuse) and install fuse3")
	}
	return err
}

// serveUntilUnmounted serves until the mount is gone, unmounting on a signal. If
// the unmount fails (files still open), it keeps serving.
func serveUntilUnmounted(a *app, srv *fuse.Server, sigs <-chan os.Signal) {
	done := make(chan struct{})
	go func() {
		srv.Wait()
		close(done)
	}()
	for {
		select {
		case <-done:
			return
		case s := <-sigs:
			a.log.Info().Stringer("signal", s).Msg("unmounting")
			notifyManager(a, "STOPPING=1\nSTATUS=unmounting")
			if err := srv.Unmount(); err != nil {
				a.log.Warn().Err(err).Msg("failed to unmount: still serving; close open files and retry")
			}
		}
	}
}

// checkAuditOutside refuses an audit log under the mount point. A
// configured log there is not used (openAudit warns); the default log may
// still be there, through COFFER_AUDIT_DIR or a home folder.
func checkAuditOutside(opts mountOptions, vol keys.VolumeID) error {
	path, _, err := audit.Where(opts.backing, vol, volumeMounts(opts.backing, opts.mountPoint))
	if err != nil {
		return err
	}
	if !within(resolveLogPath(path), opts.mountPoint) {
		return nil
	}
	return withHints(fmt.Errorf("the audit log %s is inside the mount point %s", path,
		opts.mountPoint), "the mount cannot write its own audit log through itself: move it "+
		"with coffer audit config "+shellQuote(opts.backing)+" --log FILE")
}
