package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/keyfile"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/passphrase"
	"github.com/cofferfs/coffer/keys/pkcs11"
	"github.com/cofferfs/coffer/keys/recovery"
)

type mountOptions struct {
	backing        string
	mountPoint     string
	foreground     bool
	options        []string // -o values, parsed into the fields below
	valueOption    bool     // a key=value -o option was given (applyOptionFlags)
	master         string   // master key ID or URI to use, "" for any
	passphraseFile string
	logFile        string
	cpuProfile     string // write a CPU profile of a foreground mount here
	masterFlags

	readOnly, allowOther, debug, noExec, shared bool

	// Set by the parent on the detached mount process; see daemon.go.
	readyFD, secretFD int
	logJournal        bool
	// pinFD is the pipe of a token PIN the parent read on the terminal, for
	// the token labelled pinToken; the child keeps the PIN in pin.
	pinFD    int
	pinToken string
	pin      *keys.Secret
}

const mountLong = `Mount the volume in BACKING on MOUNTPOINT and serve it until unmounted.

Before anything is unlocked, coffer checks that BACKING holds a volume and
that MOUNTPOINT is an existing, empty directory that is not mounted already.
The volume is unlocked with the first of its master keys that works, or only
with the one --master names (by ID, as "coffer status" lists them, or URI).
A passphrase is asked on the terminal, or read from --passphrase-file, only
when a passphrase master key is to be tried and no key file is readable.
The PIN of a PKCS#11 token comes from the URI's pin-source, --pin-file or
the terminal.

By default coffer mount returns once the mount answers, and a background
process keeps serving it; that process logs JSON lines to --log-file, or
without it to the journal when journald runs (journalctl -t coffer), else to
/var/log/coffer/VOLUME-ID.log as root, $XDG_STATE_HOME/coffer/VOLUME-ID.log
or ~/.local/state/coffer/VOLUME-ID.log. With --foreground it serves in the
calling process and logs to stderr (to the journal with priorities when
stderr is systemd's journal stream). SIGINT or SIGTERM unmount cleanly.
Under systemd (Type=notify) the mount sends READY=1 once it answers, and
STOPPING=1 when it unmounts.

A backing directory is served by one coffer process at a time, unless every
mount of it uses --shared: then several processes (hosts sharing the backing
directory over NFS, CephFS, ...) serve it at once. A shared mount caches
nothing in the kernel and locks byte ranges of the backing files around
every read and write, which makes it slower; docs/cli.md says what it costs
and what it guarantees. A shared and a non-shared mount refuse each other.

Mount options (-o, comma-separated or repeated):
  ro           read-only mount
  allow_other  let other users use the mount, with the kernel's permission
               checks (default_permissions); as non-root it needs
               user_allow_other in /etc/fuse.conf
  debug        log every FUSE request at debug level (shows file names and
               data in the clear: never on real secrets)
  noexec       do not allow programs in the mount to be executed
  shared       the same as --shared

` + mountHelperUsage

const mountExample = `  coffer mount /srv/app.enc /srv/app
  coffer mount /srv/app.enc /srv/app -o ro,allow_other
  coffer mount --shared /mnt/nfs/app.enc /srv/app
  coffer mount /srv/app.enc /srv/app --master 1a2b3c4d --passphrase-file /root/pass.txt
  coffer mount /srv/app.enc /srv/app --foreground --log-level debug`

func newMountCommand(a *app) *cobra.Command {
	opts := mountOptions{readyFD: -1, secretFD: -1, pinFD: -1}
	var shared bool
	cmd := &cobra.Command{
		Use:     "mount BACKING MOUNTPOINT",
		Short:   "Mount a volume and serve its files in the clear",
		Long:    mountLong,
		Example: mountExample,
		Args:    exactArgs("BACKING", "MOUNTPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing, opts.mountPoint = args[0], args[1]
			if err := applyOptionFlags(cmd, &opts); err != nil {
				return err
			}
			if shared {
				opts.options = append(opts.options, "shared") // passed on to the mount process
			}
			return runMount(cmd.Context(), a, opts)
		},
	}

	f := cmd.Flags()
	f.BoolVarP(&opts.foreground, "foreground", "f", false, "serve in this process instead of the background")
	f.BoolVar(&shared, "shared", false, "let other coffer processes (other hosts on shared storage) "+
		"serve the same backing directory at once; every one of them must use --shared")
	f.StringSliceVarP(&opts.options, "options", "o", nil, "mount options: ro, rw, allow_other, debug, noexec, shared, and the flags as key=value")
	f.StringVar(&opts.master, "master", "", "unlock only with this master key (ID or URI)")
	f.StringVar(&opts.passphraseFile, "passphrase-file", "",
		"read the passphrase from this file (mode 0600) instead of the terminal")
	f.StringVar(&opts.logFile, "log-file", "", "write the mount's log to this file, as JSON lines "+
		"(default for a background mount: see above)")
	opts.masterFlags.add(f)
	f.IntVar(&opts.readyFD, "ready-fd", -1, "internal: pipe to report readiness on")
	f.IntVar(&opts.secretFD, "passphrase-fd", -1, "internal: pipe to read the passphrase from")
	f.BoolVar(&opts.logJournal, "log-journal", false, "internal: log to the journal")
	f.IntVar(&opts.pinFD, "pin-fd", -1, "internal: pipe to read a token PIN from")
	f.StringVar(&opts.pinToken, "pin-token", "", "internal: the token the PIN on --pin-fd is for")
	f.StringVar(&opts.cpuProfile, "cpuprofile", "", "internal: write a CPU profile of a --foreground mount to this file")
	_ = f.MarkHidden("pin-fd")
	_ = f.MarkHidden("pin-token")
	_ = f.MarkHidden("log-journal")
	_ = f.MarkHidden("ready-fd")
	_ = f.MarkHidden("passphrase-fd")
	_ = f.MarkHidden("cpuprofile")
	return cmd
}

// runMount checks, unlocks and mounts the volume; in the background unless
// opts.foreground.
func runMount(ctx context.Context, a *app, opts mountOptions) error {
	// No core dumps of a process that holds the ring and maybe a passphrase.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		a.log.Warn().Err(err).Msg("failed to disable core dumps")
	}
	if err := opts.parse(); err != nil {
		return err
	}
	if opts.readyFD >= 0 {
		return runMountChild(ctx, a, opts)
	}
	if err := opts.checkLogFile(); err != nil {
		return err
	}
	if err := opts.checkPlaces(a, nil); err != nil {
		return err
	}

	if opts.foreground {
		// This process mounts: its checks and mount are one step.
		lock, err := lockMountPoint(opts.mountPoint)
		if err != nil {
			return err
		}
		defer lock.Close()
	}
	cfg, err := checkMount(opts)
	if err != nil {
		return err
	}
	if opts.foreground {
		testPause("mount-checked")
	}
	if err := opts.checkPlaces(a, cfg); err != nil {
		return err
	}
	if !opts.foreground {
		// The detached process logs elsewhere: say it on the terminal.
		if _, err := auditLogPath(a, opts.backing, cfg.VolumeID, opts.mountPoint); err != nil {
			return err
		}
	}
	secret, err := mountPassphrase(a, opts, cfg)
	if err != nil {
		return err
	}
	if opts.foreground {
		if err := foregroundLogs(a, opts.logFile); err != nil {
			secret.Wipe()
			return err
		}
		stop, err := startCPUProfile(opts.cpuProfile)
		if err != nil {
			secret.Wipe()
			return err
		}
		defer stop()
		return serve(ctx, a, opts, cfg, secret, notifier{})
	}

	// Without --log-file, a background mount logs to the journal where
	// there is one, else to its default log file.
	logFile, logWhere := "", journalWhere
	if opts.logFile != "" || !journalAvailable() {
		logFile, err = opts.logPath(cfg.VolumeID)
		if err == nil && opts.logFile == "" {
			err = makeDefaultLogDir(logFile)
		}
		logWhere = logFile
	}
	if err != nil {
		secret.Wipe()
		return err
	}
	pin, token, err := mountPIN(ctx, a, opts, cfg)
	if err != nil {
		secret.Wipe()
		return err
	}
	opts.pinToken = token
	if err := startDetached(ctx, opts.childArgs(a, logFile), logWhere, secret, pin); err != nil {
		return err
	}
	a.log.Info().Str("backing", opts.backing).Str("mountpoint", opts.mountPoint).
		Str("log", logWhere).Msg("mounted in the background")
	return nil
}

// journalWhere says where a mount that logs to the journal logs, in the
// words of a hint.
const journalWhere = "the journal (journalctl -t " + journalIdentifier + ")"

// parse checks the -o options and makes the paths absolute, as the detached
// process runs in "/".
func (o *mountOptions) parse() error {
	for _, opt := range o.options {
		switch strings.TrimSpace(opt) {
		case "ro":
			o.readOnly = true
		case "rw":
			o.readOnly = false
		case "allow_other":
			o.allowOther = true
		case "debug":
			o.debug = true
		case "noexec":
			o.noExec = true
		case "exec":
			o.noExec = false
		case "shared":
			o.shared = true
		default:
			hints := []string{"known options: ro, rw, allow_other, debug, exec, noexec, shared, and " +
				"key=value forms of flags such as master=ID; run 'coffer mount --help' for the rest"}
			if o.valueOption {
				hints = append([]string{"an option value cannot hold a comma (-o splits at every comma): " +
					"give the master key by its ID (master=ID, see coffer master list) or use --master"}, hints...)
			}
			return withHints(usageErrorf("unknown mount option %q", opt), hints...)
		}
	}
	if o.recoveryKey != "" && o.passphraseFile != "" {
		return usageErrorf("--recovery-key and --passphrase-file exclude each other: a mount " +
			"unlocks with one master key")
	}
	if err := o.masterFlags.absolute(); err != nil {
		return err
	}
	for _, p := range []*string{&o.backing, &o.mountPoint, &o.passphraseFile, &o.logFile} {
		if *p == "" || *p == "-" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("failed to resolve %s: %w", *p, err)
		}
		*p = abs
	}
	// The mount table names the backing directory as given to the kernel;
	// status finds mounts by its canonical path. fusermount3 refuses a
	// mount point that is a symbolic link, and the checks must look at the
	// directory that will be mounted on: both are used resolved.
	for _, p := range []*string{&o.backing, &o.mountPoint} {
		if real, err := filepath.EvalSymlinks(*p); err == nil {
			*p = real
		}
	}
	return nil
}

// checkMount runs every check that needs no key: the volume config is
// readable and supported, the mount point can take a mount, allow_other is
// permitted, and --master names a master key of the volume.
func checkMount(opts mountOptions) (*keys.Config, error) {
	cfg, err := readConfigToWrite(opts.backing)
	if err != nil {
		return nil, err
	}
	if err := checkMountPoint(opts.mountPoint); err != nil {
		return nil, err
	}
	if err := checkNotInside(opts.backing, opts.mountPoint); err != nil {
		return nil, err
	}
	if opts.allowOther {
		if err := checkAllowOther(os.Geteuid()); err != nil {
			return nil, err
		}
	}
	if _, err := opts.candidates(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkPlaces refuses a PIN or passphrase file inside the mount point (or
// another mount of the volume) or the backing directory: at boot it would
// not be there. With cfg, it warns of master key files inside the mount
// point instead: they cannot unlock this volume, but another key may.
func (o mountOptions) checkPlaces(a *app, cfg *keys.Config) error {
	var places []keyPlace
	if cfg == nil {
		places = flagPlaces(o.masterFlags, "--passphrase-file", o.passphraseFile, true)
	} else {
		for _, m := range cfg.Masters {
			for _, p := range uriPlaces(m.URI) {
				p.what = "master key " + m.ID + ": " + p.what
				p.boot, p.keyFile = false, true
				places = append(places, p)
			}
		}
	}
	warnings, err := checkKeyPlaces(o.backing, volumeMounts(o.backing, o.mountPoint), places)
	for _, w := range warnings {
		a.log.Warn().Msg(w)
	}
	return err
}

// candidates returns the master keys the unlock will try.
func (o mountOptions) candidates(cfg *keys.Config) ([]keys.MasterEntry, error) {
	if o.master == "" && o.recoveryKey != "" {
		var out []keys.MasterEntry
		for _, m := range cfg.Masters {
			if m.Kind == recovery.Kind {
				out = append(out, m)
			}
		}
		if len(out) == 0 {
			return nil, withHints(errors.New("volume has no recovery key"),
				"'coffer master list "+shellQuote(o.backing)+"' shows its master keys")
		}
		return out, nil
	}
	if o.master == "" {
		// Recovery keys are tried only when one is given.
		var out []keys.MasterEntry
		for _, m := range cfg.Masters {
			if m.Kind != recovery.Kind {
				out = append(out, m)
			}
		}
		if len(out) == 0 {
			return nil, withHints(errors.New("volume has only recovery master keys"),
				"unlock with one: --recovery-key FILE, or - to type it")
		}
		return out, nil
	}
	id, err := masterID(cfg, o.master)
	if err != nil {
		return nil, err
	}
	m, _ := cfg.Master(id)
	if o.recoveryKey != "" && m.Kind != recovery.Kind {
		return nil, usageErrorf("--recovery-key unlocks a recovery master key, and --master %s is "+
			"of kind %s", m.ID, m.Kind)
	}
	return []keys.MasterEntry{m}, nil
}

// mountPassphrase returns the passphrase for the unlock, or nil when none is
// needed: read from --passphrase-file if given, else asked on the terminal
// when a passphrase master will be tried and no key file is readable.
func mountPassphrase(a *app, opts mountOptions, cfg *keys.Config) (*keys.Secret, error) {
	if opts.recoveryKey != "" {
		return mountRecoveryKey(a, opts)
	}
	if opts.passphraseFile != "" {
		return readPassphraseFile(opts.passphraseFile)
	}
	cands, err := opts.candidates(cfg)
	if err != nil {
		return nil, err
	}
	hasPassphrase, hasOther := false, false
	for _, m := range cands {
		switch m.Kind {
		case passphrase.Kind:
			hasPassphrase = true
		case keyfile.Kind:
			if keyFileReadable(m.URI) {
				return nil, nil
			}
		default:
			hasOther = true
		}
	}
	if !hasPassphrase {
		return nil, nil
	}
	pass, err := promptPassphrase(a, fmt.Sprintf("Passphrase for volume %s: ", cfg.VolumeID),
		false)
	if errors.Is(err, errNoTerminal) && hasOther {
		// Unattended (at boot, say): a TPM, token or KMS key may unlock on
		// its own; if none does, the passphrase master reports the missing
		// terminal in the unlock error.
		return nil, nil
	}
	return pass, err
}

// mountRecoveryKey checks the recovery key before anything else happens, so
// that a typing mistake is reported as such. With "-" it returns the key's
// text, read here, in the parent, which has the terminal: it travels to
// the detached process as a passphrase would. A file is read again there.
func mountRecoveryKey(a *app, opts mountOptions) (*keys.Secret, error) {
	var text *keys.Secret
	mopts := opts.masterFlags.options()
	mopts.RecoveryKeyText = func(context.Context) (*keys.Secret, error) {
		var err error
		text, err = readRecoveryKeyText(a)
		if err != nil {
			return nil, err
		}
		return keys.SecretFromBytes(append([]byte(nil), text.InsecureBytes()...)), nil
	}
	priv, err := recovery.Load(context.Background(), mopts)
	if err != nil {
		text.Wipe()
		return nil, recoveryKeyError(err)
	}
	priv.Wipe()
	return text, nil
}

// mountPIN asks on the terminal for the PIN of the first PKCS#11 master key
// the unlock will try, for the background mount process, which has no
// terminal. It asks nothing when --pin-file is given, when that key's URI
// names a pin-source, when a readable key file or a passphrase master comes
// first, or when there is no terminal (the mount process then fails with an
// error naming --pin-file). It returns the PIN and the token's label.
func mountPIN(ctx context.Context, a *app, opts mountOptions, cfg *keys.Config) (*keys.Secret,
	string, error) {
	if opts.pinFile != "" {
		return nil, "", nil
	}
	cands, err := opts.candidates(cfg)
	if err != nil {
		return nil, "", err
	}
	for _, m := range cands {
		switch m.Kind {
		case keyfile.Kind:
			if keyFileReadable(m.URI) {
				return nil, "", nil
			}
		case passphrase.Kind:
			return nil, "", nil
		case pkcs11.Kind:
			u, err := pkcs11.ParseURI(m.URI)
			if err != nil || u.PINSource != "" {
				return nil, "", nil
			}
			pin, err := pinPrompt(a)(ctx, masterkey.PINRequest{Token: u.Token, URI: m.URI})
			if errors.Is(err, errNoPINTerminal) {
				return nil, "", nil
			}
			return pin, u.Token, err
		}
	}
	return nil, "", nil
}

// keyFileReadable reports whether the key file of a file:// URI can be read.
func keyFileReadable(uri string) bool {
	path, err := keyfile.ParseURI(uri)
	return err == nil && unix.Access(path, unix.R_OK) == nil
}

// logPath returns --log-file or the default log file of the volume.
func (o mountOptions) logPath(vol keys.VolumeID) (string, error) {
	if o.logFile != "" {
		return o.logFile, nil
	}
	name := vol.String() + ".log"
	if os.Geteuid() == 0 {
		return filepath.Join("/var/log/coffer", name), nil
	}
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "coffer", name), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", withHints(fmt.Errorf("failed to choose a log file: %w", err), "pass --log-file FILE")
	}
	return filepath.Join(home, ".local", "state", "coffer", name), nil
}

// childArgs returns the command line of the detached mount process.
func (o mountOptions) childArgs(a *app, logFile string) []string {
	args := []string{"mount", "--foreground",
		fmt.Sprintf("--ready-fd=%d", childReadyFD), fmt.Sprintf("--passphrase-fd=%d", childSecretFD),
		fmt.Sprintf("--pin-fd=%d", childPINFD),
		"--log-level=" + a.logLevel, "--log-format=json"}
	if logFile == "" {
		args = append(args, "--log-journal")
	} else {
		args = append(args, "--log-file="+logFile)
	}
	if len(o.options) > 0 {
		args = append(args, "-o", strings.Join(o.options, ","))
	}
	if o.master != "" {
		args = append(args, "--master="+o.master)
	}
	if o.pinToken != "" {
		args = append(args, "--pin-token="+o.pinToken)
	}
	args = append(args, o.masterFlags.args()...)
	return append(args, "--", o.backing, o.mountPoint)
}

// runMountChild is the detached mount process: it logs to the log file,
// takes the passphrase from its parent, mounts, and reports the outcome on
// the ready pipe.
func runMountChild(ctx context.Context, a *app, opts mountOptions) error {
	n := openNotifier(opts.readyFD)
	err := startChild(ctx, a, opts, n)
	if err != nil {
		a.log.Error().Err(err).Msg("mount failed")
		n.failed(err)
	}
	return err
}

func startChild(ctx context.Context, a *app, opts mountOptions, n notifier) error {
	if opts.logJournal {
		if err := logToJournal(a); err != nil {
			return err
		}
	} else if err := redirectLogs(a, opts.logFile); err != nil {
		return err
	}
	secret, err := readParentSecret(opts.secretFD)
	if err != nil {
		return err
	}
	opts.pin, err = readParentSecret(opts.pinFD)
	if err != nil {
		secret.Wipe()
		return err
	}
	// Held until the process ends: checks and mount are one step against
	// another coffer mount on the same mount point.
	lock, err := lockMountPoint(opts.mountPoint)
	if err != nil {
		secret.Wipe()
		opts.pin.Wipe()
		return err
	}
	defer lock.Close()
	cfg, err := checkMount(opts)
	if err != nil {
		secret.Wipe()
		opts.pin.Wipe()
		return err
	}
	testPause("mount-checked")
	return serve(ctx, a, opts, cfg, secret, n)
}

// redirectLogs points the logger, and stderr for panics, at the log file.
func redirectLogs(a *app, path string) error {
	f, err := openLogFile(path)
	if err != nil {
		return err
	}
	if err := unix.Dup3(int(f.Fd()), int(os.Stderr.Fd()), 0); err != nil {
		f.Close()
		return fmt.Errorf("failed to redirect stderr to the log file: %w", err)
	}
	return setFileLogger(a, f)
}

// foregroundLogs points the logger of a foreground mount at path, if not
// empty, else at the journal when standard error goes there (a systemd
// service), so that each event keeps its priority.
func foregroundLogs(a *app, path string) error {
	if path == "" {
		if stderrIsJournal() && journalAvailable() {
			return logToJournal(a)
		}
		return nil
	}
	f, err := openLogFile(path)
	if err != nil {
		return err
	}
	return setFileLogger(a, f)
}

// setFileLogger makes a JSON logger on f the app's logger. f stays open for
// the life of the process.
func setFileLogger(a *app, f *os.File) error {
	log, err := newLogger(f, a.logLevel, logFormatJSON)
	if err != nil {
		f.Close()
		return err
	}
	a.log = log
	return nil
}

// readParentSecret reads the passphrase the parent sent on fd; nil if the
// parent sent none.
func readParentSecret(fd int) (*keys.Secret, error) {
	if fd < 0 {
		return nil, nil
	}
	f := os.NewFile(uintptr(fd), "passphrase-pipe")
	defer f.Close()
	buf := make([]byte, maxPassphraseFile)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		clear(buf)
		return nil, fmt.Errorf("failed to read passphrase from parent: %w", err)
	}
	if n == 0 {
		return nil, nil
	}
	s := keys.SecretFromBytes(buf[:n])
	clear(buf)
	return s, nil
}
