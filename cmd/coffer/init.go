package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/fs/names"
	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/passphrase"
	"github.com/cofferfs/coffer/keys/recovery"
)

type initOptions struct {
	backing        string
	masters        []string
	passphraseFile string
	plaintextNames bool
	masterFlags
	auditLog    string // --audit-log, absolute once checked
	auditSyslog bool
	maxKeyAge   string // --max-key-age

	// Argon2id cost of a passphrase master; costSet says whether any flag
	// changed the default.
	cost    passphrase.Cost
	costSet bool
}

func newInitCommand(a *app) *cobra.Command {
	var opts initOptions
	def := passphrase.DefaultCost()
	var memMiB uint32
	cmd := &cobra.Command{
		Use:   "init BACKING --master URI [--master URI ...]",
		Short: "Create a volume in an empty backing directory",
		Long: `Create a volume in BACKING: a random volume ID, a new key ring, and one
sealed copy of the ring per master key, all in BACKING/.coffer/volume.json.

BACKING must be an existing, empty directory; init never overwrites a volume.
Every --master names a master key that can unlock the volume on its own:
  file:///ABSOLUTE/PATH  a key file made by "coffer keys create"
  passphrase:            a passphrase, asked twice on the terminal or read
                         from --passphrase-file, stretched with Argon2id
Entry names, symbolic link targets and user extended attributes are
encrypted; --plaintext-names keeps them readable in the backing directory
(only contents are encrypted then). The choice is fixed for the volume's life.
Init prints the volume ID and the ID of each master key.`,
		Example: `  mkdir -m 700 /srv/app.enc
  coffer init /srv/app.enc --master file:///etc/coffer/app.key
  coffer init /srv/app.enc --master file:///etc/coffer/app.key --master passphrase:
  coffer init /srv/app.enc --master passphrase: --passphrase-file /root/pass.txt`,
		Args: exactArgs("BACKING"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing = args[0]
			kib, err := argon2MemoryKiB(memMiB)
			if err != nil {
				return err
			}
			opts.cost.MemoryKiB = kib
			f := cmd.Flags()
			opts.costSet = f.Changed("argon2-time") || f.Changed("argon2-memory") ||
				f.Changed("argon2-threads")
			return runInit(cmd.Context(), a, opts)
		},
	}

	f := cmd.Flags()
	f.StringArrayVar(&opts.masters, "master", nil, "master key URI (repeat for several master keys)")
	f.StringVar(&opts.passphraseFile, "passphrase-file", "",
		"read the passphrase from this file (mode 0600) instead of the terminal")
	f.BoolVar(&opts.plaintextNames, "plaintext-names", false,
		"store file names, link targets and xattrs unencrypted (fixed for the volume's life)")
	opts.masterFlags.add(f)
	// At init the recovery key is enrolled, not used to unlock.
	f.Lookup("recovery-key").Usage = "with --master recovery:, enrol the existing recovery key " +
		"in this file (mode 0600), or '-' to type it or read stdin"
	f.Uint32Var(&opts.cost.Time, "argon2-time", def.Time, "Argon2id passes for a passphrase master")
	f.Uint32Var(&memMiB, "argon2-memory", def.MemoryKiB>>10, "Argon2id memory in MiB for a passphrase master")
	f.Uint8Var(&opts.cost.Threads, "argon2-threads", def.Threads, "Argon2id threads for a passphrase master")
	f.StringVar(&opts.auditLog, "audit-log", "", "keep the volume's audit log in this file "+
		"(default: VOLUME-ID.audit.jsonl in /var/log/coffer as root, else in ~/.local/state/coffer)")
	f.BoolVar(&opts.auditSyslog, "audit-syslog", false, "also copy every audit record to the local syslog")
	f.StringVar(&opts.maxKeyAge, "max-key-age", "off",
		`maximum age of the primary ring key, in days (90d), or "off" (see coffer config)`)
	return cmd
}

// argon2MemoryKiB converts --argon2-memory from MiB to KiB, refusing a value
// above passphrase.MaxMemoryKiB before it can wrap around in 32 bits.
func argon2MemoryKiB(mib uint32) (uint32, error) {
	kib := uint64(mib) << 10
	if kib > passphrase.MaxMemoryKiB {
		return 0, usageErrorf("--argon2-memory %d MiB is above the limit of %d MiB",
			mib, passphrase.MaxMemoryKiB>>10)
	}
	return uint32(kib), nil
}

// runInit creates the volume and prints its ID and master key IDs.
func runInit(ctx context.Context, a *app, opts initOptions) error {
	refs, err := opts.check()
	if err != nil {
		return err
	}
	maxAge, err := parseDays(opts.maxKeyAge)
	if err != nil {
		return err
	}
	if err := checkInitTarget(opts.backing); err != nil {
		return err
	}
	if err := opts.checkAudit(); err != nil {
		return err
	}

	enrollments, err := enrollAll(ctx, a, opts, refs)
	defer wipeMasters(enrollments)
	if err != nil {
		return err
	}
	cfg, ring, err := keys.Init(ctx, opts.backing, enrollments, keys.InitOptions{Logger: a.log,
		PlaintextNames: opts.plaintextNames, MaxKeyAgeDays: maxAge})
	if err != nil {
		return initError(opts.backing, err)
	}
	if cfg.EncryptedNames() {
		if err := names.CreateRootRecord(opts.backing, ring, cfg.VolumeID); err != nil {
			return withHints(fmt.Errorf("failed to finish volume: %w", err),
				"mount the volume once read-write: the mount creates the record itself")
		}
	}
	if err := opts.startAudit(ctx, a, cfg, ring); err != nil {
		return withHints(fmt.Errorf("volume %s was created, but its audit log was not: %w",
			cfg.VolumeID, err), "fix the cause, then set the log with: coffer audit config "+
			shellQuote(opts.backing)+" --log FILE")
	}
	printInit(a.stdout, opts.backing, cfg, ring)
	return nil
}

// checkAudit resolves --audit-log and checks, before anything is created,
// that the audit log can be written.
func (o *initOptions) checkAudit() error {
	if o.auditLog == "" {
		path, err := audit.DefaultPath(keys.VolumeID{})
		if err != nil {
			return withHints(err, "pass --audit-log FILE")
		}
		return checkAuditWritable(path, true)
	}
	path, err := auditLogFlag("--audit-log", o.auditLog, o.backing)
	if err != nil {
		return err
	}
	o.auditLog = path
	if err := checkAuditWritable(path, false); err != nil {
		return err
	}
	if err := checkAuditFree(path); err != nil {
		return err
	}
	// An empty file must be this user's: later commands use only such a log.
	return audit.CheckLog(path, keys.VolumeID{})
}

// checkAuditFree refuses an audit log that already holds records: each log
// belongs to one volume.
func checkAuditFree(path string) error {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() == 0 {
		return nil
	}
	// A new volume has no records yet: whatever the file holds is not its
	// log. Say what it is, as a typo may have named an unrelated file.
	var head struct {
		Seq    uint64        `json:"seq"`
		Volume keys.VolumeID `json:"volume"`
	}
	if readFirstJSON(path, &head) == nil && head.Seq != 0 && head.Volume != (keys.VolumeID{}) {
		return withHints(usageErrorf("--audit-log %s already holds the audit log of volume %s",
			path, head.Volume), "each volume keeps its own audit log: choose a new file")
	}
	return withHints(usageErrorf("--audit-log %s is not empty and is not an audit log: coffer "+
		"appends only to a new or empty file", path), "choose a new file")
}

// startAudit saves the audit settings of the new volume and records its
// creation.
func (o initOptions) startAudit(ctx context.Context, a *app, cfg *keys.Config,
	ring *keys.Ring) error {
	if o.auditLog != "" || o.auditSyslog {
		err := audit.WriteSettings(o.backing, audit.Settings{Log: o.auditLog, Syslog: o.auditSyslog})
		if err != nil {
			return err
		}
	}
	// The log named by --audit-log is started here, with the init record
	// as its first: later commands use a configured log only then.
	l, err := audit.OpenVolume(o.backing, cfg.VolumeID, audit.Options{Logger: a.log, Keys: ring,
		Chosen: o.auditLog})
	if err != nil {
		return err
	}
	// "log" names the file the log was started as: a configured log whose
	// records name another is a renamed copy and is not used (audit.Where).
	e := audit.Event{Type: audit.EventInit, RingKey: ring.Primary().ID,
		Detail: map[string]string{"masters": mastersDetail(cfg), "log": l.Path()}}
	if len(cfg.Masters) == 1 {
		e.Master = cfg.Masters[0].ID
	}
	err = l.Record(ctx, e)
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	return err
}

// check validates the flags and parses the master URIs.
func (o initOptions) check() ([]masterkey.Ref, error) {
	if len(o.masters) == 0 {
		return nil, withHints(usageErrorf("init needs at least one --master URI"),
			"for example: coffer init "+o.backing+" --master file:///etc/coffer/app.key")
	}
	var refs []masterkey.Ref
	seen := map[string]bool{}
	hasPassphrase := false
	for _, uri := range o.masters {
		ref, err := parseMasterURI(uri)
		if err != nil {
			return nil, err
		}
		if seen[ref.URI] {
			return nil, usageErrorf("master key %s is given twice", ref)
		}
		seen[ref.URI] = true
		hasPassphrase = hasPassphrase || ref.Kind == passphrase.Kind
		refs = append(refs, ref)
	}

	switch {
	case !hasPassphrase && o.passphraseFile != "":
		return nil, usageErrorf("--passphrase-file needs a --master passphrase:")
	case !hasPassphrase && o.costSet:
		return nil, usageErrorf("--argon2-* flags need a --master passphrase:")
	case o.costSet:
		if err := o.cost.Validate(); err != nil {
			return nil, asUsage(fmt.Errorf("invalid Argon2id cost: %w", err))
		}
	}
	return refs, nil
}

// checkInitTarget refuses early, before any passphrase prompt, a backing
// directory that keys.Init would refuse. keys.Init checks again.
func checkInitTarget(backing string) error {
	fi, err := os.Stat(backing)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return withHints(fmt.Errorf("backing directory %s does not exist", backing),
			"create it first: mkdir -m 700 "+backing)
	case err != nil:
		return fmt.Errorf("failed to inspect backing directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("backing path %s is not a directory", backing)
	}

	dir := filepath.Join(backing, keys.DirName)
	if _, err := os.Lstat(filepath.Join(dir, keys.ConfigName)); errors.Is(err, fs.ErrNotExist) &&
		hasConfigDir(backing) {
		return withHints(fmt.Errorf("%s has a %s folder without %s: another coffer init is "+
			"creating the volume right now, or one was interrupted", backing, keys.DirName,
			keys.ConfigName), "if no other init is running, remove it (rmdir "+shellQuote(dir)+
			") and run coffer init again")
	}
	if _, err := os.Lstat(dir); err == nil {
		return initError(backing, fmt.Errorf("%w: %s already holds a volume",
			keys.ErrAlreadyInitialized, backing))
	}
	names, err := readDirNames(backing, 1)
	if err != nil {
		return fmt.Errorf("failed to read backing directory: %w", err)
	}
	if len(names) > 0 {
		return initError(backing, fmt.Errorf("%w: %s holds %q", keys.ErrNotEmpty, backing, names[0]))
	}
	return nil
}

// initError adds advice to the errors of keys.Init.
func initError(backing string, err error) error {
	switch {
	case errors.Is(err, keys.ErrAlreadyInitialized):
		return withHints(err, "init never overwrites a volume; see it with: coffer status "+backing)
	case errors.Is(err, keys.ErrNotEmpty):
		return withHints(err,
			"coffer encrypts only files written through the mount: init an empty directory, "+
				"mount it, then copy the files in")
	case errors.Is(err, fs.ErrNotExist):
		return withHints(err, "create it first: mkdir -m 700 "+backing)
	}
	return err
}

// enrollAll prepares each master key for keys.Init, asking for passphrases.
func enrollAll(ctx context.Context, a *app, opts initOptions, refs []masterkey.Ref) ([]keys.Enrollment, error) {
	mopts := opts.masterFlags.options()
	mopts.Passphrase = enrollPassphraseFunc(a, opts.passphraseFile)
	mopts.PIN = pinPrompt(a)
	mopts.Backing = opts.backing
	if opts.costSet {
		mopts.PassphraseCost = &opts.cost
	}
	var out []keys.Enrollment
	for _, ref := range refs {
		e, err := masterkey.Enroll(ctx, ref.URI, mopts)
		if errors.Is(err, recovery.ErrNoPrivateKey) {
			// 'coffer recovery new' needs the volume that init makes.
			return out, withHints(fmt.Errorf("--master %s needs --recovery-key FILE at init: "+
				"init enrols only a recovery key that exists", ref), "to make a new one, "+
				"init with the other master keys, then run: coffer recovery new "+
				shellQuote(opts.backing))
		}
		if err != nil {
			return out, fmt.Errorf("failed to enroll master key %q: %w", ref.String(), err)
		}
		out = append(out, e)
	}
	return out, nil
}

// enrollPassphraseFunc reads a new passphrase from file, or prompts twice.
func enrollPassphraseFunc(a *app, file string) masterkey.PassphraseFunc {
	return func(_ context.Context, req masterkey.PassphraseRequest) (*keys.Secret, error) {
		if file != "" {
			return readPassphraseFile(file)
		}
		return promptPassphrase(a, "New passphrase: ", req.Enroll)
	}
}

// wipeMasters wipes the key material of masters that hold some.
func wipeMasters(es []keys.Enrollment) {
	for _, e := range es {
		if w, ok := e.Master.(interface{ Wipe() }); ok {
			w.Wipe()
		}
	}
}

// printInit prints the new volume's ID and master keys.
func printInit(w io.Writer, backing string, cfg *keys.Config, ring *keys.Ring) {
	fmt.Fprintf(w, "initialised volume %s in %s\n", cfg.VolumeID, backing)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, m := range cfg.Masters {
		fmt.Fprintf(tw, "master key\t%s\t%s\t%s\n", m.ID, m.Kind, keys.RedactURI(m.URI))
	}
	p := ring.Primary()
	fmt.Fprintf(tw, "ring key\t%d\t%s\n", p.ID, p.State)
	_ = tw.Flush()
	if abs, err := filepath.Abs(backing); err == nil {
		backing = abs
	}
	fmt.Fprintf(w, "mount it with: coffer mount %s MOUNTPOINT\n", shellQuote(backing))
}

// readDirNames returns up to n names in dir.
func readDirNames(dir string, n int) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(n)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return names, err
}

// readFirstJSON decodes the first line of the file at path into v.
func readFirstJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(io.LimitReader(f, 64<<10), 64<<10).ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return json.Unmarshal(line, v)
}
