package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/hcvault"
	"github.com/cofferfs/coffer/keys/keyfile"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/pkcs11"
	"github.com/cofferfs/coffer/keys/recovery"
)

// unlockOptions say how an admin command (master add, recovery new)
// unlocks the volume: with the master key --with names, or the first that
// works; passphrases from --passphrase-file or the terminal; a recovery
// key from --recovery-key.
type unlockOptions struct {
	backing        string
	with           string
	passphraseFile string
	masterFlags
}

// unlockVolume unlocks the volume in o.backing for a change to its master
// keys. Passphrases are asked only when a passphrase master is tried;
// recovery masters only with --recovery-key. failed, if not nil, is called
// for each master key that did not unlock.
func unlockVolume(ctx context.Context, a *app, cfg *keys.Config, o unlockOptions,
	failed func(keys.MasterEntry, error)) (*keys.Ring, keys.MasterEntry, error) {
	uo := keys.UnlockOptions{Logger: a.log, Failed: warnRefused(a, failed)}
	if o.with != "" {
		id, err := masterID(cfg, o.with)
		if err != nil {
			return nil, keys.MasterEntry{}, err
		}
		uo.Only = id
	} else if o.recoveryKey != "" {
		uo.Kind = recovery.Kind
	} else {
		uo.SkipKind = recovery.Kind
	}

	mopts := o.masterFlags.options()
	mopts.Backing = o.backing
	mopts.NamedURI = namedURI(o.with)
	mopts.PIN = pinPrompt(a)
	mopts.RecoveryKeyText = recoveryKeyReader(a)
	mopts.Passphrase = func(_ context.Context, req masterkey.PassphraseRequest) (*keys.Secret, error) {
		if o.passphraseFile != "" {
			return readPassphraseFile(o.passphraseFile)
		}
		return promptPassphrase(a, fmt.Sprintf("Passphrase for volume %s (master key %s): ",
			cfg.VolumeID, req.MasterID), false)
	}
	ring, entry, err := keys.Unlock(ctx, cfg, masterkey.Opener(ctx, mopts), uo)
	if err != nil {
		return nil, keys.MasterEntry{}, adminUnlockError(o.backing, err)
	}
	return ring, entry, nil
}

// adminUnlockError adds advice to a failed unlock by an admin command.
func adminUnlockError(backing string, err error) error {
	var perm *keyfile.PermissionError
	if errors.As(err, &perm) {
		return hintOnce(fmt.Errorf("failed to unlock volume: %w", err), perm)
	}
	var hints []string
	if errors.Is(err, keys.ErrNoCandidate) {
		hints = append(hints, "unlock with a recovery key: --recovery-key FILE, or - to type it")
	}
	if errors.Is(err, recovery.ErrTypo) {
		hints = append(hints, "check that group against the printed key and type it again")
	}
	var fix hinter // a key file's own fix (chmod 600 of a recovery key file) says it all
	if errors.Is(err, keys.ErrWrongKey) && !errors.As(err, &fix) {
		hints = append(hints, "an existing master key must unlock the volume first: choose one "+
			"with --with ID ('coffer master list "+backing+"' lists them)")
	}
	return withHints(fmt.Errorf("failed to unlock volume: %w", err), hints...)
}

// recoveryKeyReader returns the function that reads a recovery key for
// --recovery-key -: typed at the terminal without echo, or read from a
// pipe on standard input.
func recoveryKeyReader(a *app) func(context.Context) (*keys.Secret, error) {
	return func(context.Context) (*keys.Secret, error) { return readRecoveryKeyText(a) }
}

// maxRecoveryKeyText bounds what --recovery-key - reads from a pipe.
const maxRecoveryKeyText = 16 << 10

func readRecoveryKeyText(a *app) (*keys.Secret, error) {
	if in, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(in.Fd())) {
		s, err := promptOnce(a, in, "Recovery key (14 groups of 5 characters): ")
		if err != nil {
			return nil, fmt.Errorf("failed to read recovery key: %w", err)
		}
		return s, nil
	}
	buf := make([]byte, maxRecoveryKeyText+1)
	defer clear(buf)
	n, err := io.ReadFull(a.stdin, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("failed to read recovery key from standard input: %w", err)
	}
	if n > maxRecoveryKeyText {
		return nil, fmt.Errorf("failed to read recovery key: standard input holds more than "+
			"%d bytes", maxRecoveryKeyText)
	}
	if n == 0 {
		return nil, withHints(errors.New("failed to read recovery key: standard input is empty"),
			"type it on a terminal, pipe it in, or pass --recovery-key FILE")
	}
	return keys.SecretFromBytes(buf[:n]), nil
}

// masterID resolves --master, an ID or a URI, to a master key ID of cfg.
// A URI that more than one entry has is refused: the choice would be the
// config's order, which whoever can write the backing directory sets.
func masterID(cfg *keys.Config, s string) (string, error) {
	if _, ok := cfg.Master(s); ok {
		return s, nil
	}
	// Anything with a colon is meant as a URI: say what is wrong with it
	// before saying the volume lacks it.
	if strings.Contains(s, ":") {
		ref, err := parseMasterURI(s)
		if err != nil {
			return "", err
		}
		var found []string
		for _, m := range cfg.Masters {
			if m.URI == ref.URI {
				found = append(found, m.ID)
			}
		}
		switch {
		case len(found) == 1:
			return found[0], nil
		case len(found) > 1:
			// Anyone who can write the backing directory can add a copy of
			// an entry under a new ID: picking one would act on whichever
			// comes first, maybe that copy.
			return "", withHints(fmt.Errorf("master key %s names %d master keys of the "+
				"volume: %s", keys.RedactURI(s), len(found), strings.Join(found, ", ")),
				"give the ID instead ('coffer master list' shows them); an entry you did "+
					"not add may have been copied into the volume config")
		}
	}
	ids := make([]string, len(cfg.Masters))
	for i, m := range cfg.Masters {
		ids[i] = m.ID + " (" + m.Kind + ")"
	}
	return "", withHints(fmt.Errorf("volume has no master key %s", keys.RedactURI(s)),
		"its master keys: "+strings.Join(ids, ", "))
}

// warnRefused wraps failed, a Failed hook of keys.Unlock (or nil), so that
// a master key refused because its config entry names a PKCS#11 module, a
// PIN file or a Vault server that nothing outside the backing directory
// vouches for also gives a warning: an unlock that then succeeds with
// another master key would otherwise hide a config that someone who can
// write the backing directory may have edited.
func warnRefused(a *app, failed func(keys.MasterEntry, error)) func(keys.MasterEntry, error) {
	return func(m keys.MasterEntry, err error) {
		if errors.Is(err, pkcs11.ErrUntrustedModule) || errors.Is(err, pkcs11.ErrPINInBacking) ||
			errors.Is(err, hcvault.ErrUnconfirmed) {
			a.log.Warn().Str("master", m.ID).Err(err).Msg("master key not used; if you did not " +
				"set it up this way, check the volume config (coffer master list)")
		}
		if failed != nil {
			failed(m, err)
		}
	}
}

// namedURI returns the canonical form of a master key URI the user named
// (--master URI, --with URI), or "" for an ID or nothing. A kind that
// sends secrets to the server its URI names takes the server of that
// entry as confirmed: it came from the user, not only from the volume
// config.
func namedURI(s string) string {
	if !strings.Contains(s, ":") {
		return ""
	}
	ref, err := masterkey.Parse(s)
	if err != nil {
		return ""
	}
	return ref.URI
}

// recoveryKeyError adds advice to a recovery key that could not be read.
func recoveryKeyError(err error) error {
	var perm *recovery.PermissionError
	switch {
	case errors.As(err, &perm):
		return withHints(err, perm.Hint())
	case errors.Is(err, recovery.ErrTypo):
		return withHints(fmt.Errorf("failed to read recovery key: %w", err),
			"check that group against the printed key and type it again")
	}
	return fmt.Errorf("failed to read recovery key: %w", err)
}
