package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/recovery"
)

const auditLong = `Inspect and configure a volume's audit trail of key use.

Every command that uses a volume's keys appends one JSON line per key event
to the volume's audit log: init, mount (which master key unlocked), unmount,
each master key that failed to unlock, integrity failures seen by the mount
(at most one record per file per 5 minutes, with a count), and the key
management commands (master add and remove, recovery new and recovery-key
use, backup, restore). Each record holds the hash of the one before, and
records written with the volume unlocked carry a MAC under a key derived
from the ring, so edits, deletions, reordering and forged records are
detected by "coffer audit verify". The head of the chain is also kept in
BACKING/.coffer/audit-head.json, which exposes a cut-off tail.

The log lives outside the backing directory: by default
/var/log/coffer/VOLUME-ID.audit.jsonl as root, else
$XDG_STATE_HOME/coffer/VOLUME-ID.audit.jsonl (~/.local/state/coffer).
"coffer audit config" moves it or adds a copy to syslog. docs/audit.md
describes the format and what is and is not detected.`

func newAuditCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify, show and configure the audit trail of key use",
		Long:  auditLong,
		Args:  cobra.ArbitraryArgs,
		RunE:  runGroup,
	}
	cmd.AddCommand(newAuditVerifyCommand(a), newAuditShowCommand(a), newAuditConfigCommand(a))
	return cmd
}

type auditVerifyOptions struct {
	logFile        string
	backing        string
	chainOnly      bool
	master         string
	passphraseFile string
	masterFlags
}

func newAuditVerifyCommand(a *app) *cobra.Command {
	var opts auditVerifyOptions
	cmd := &cobra.Command{
		Use:   "verify LOGFILE [--backing BACKING]",
		Short: "Check an audit log for edits, deletions, reordering, truncation and forgery",
		Long: `Check the audit log LOGFILE and report the first broken record, by line
number and seq, with the reason; exit status 1 if one is found.

Without --backing only the hash chain is checked: every line whole, seq
counting up from 1, each record linked to the one before, the first to the
volume. Anyone can do that, but someone who rewrites the file from the
edited line on passes it.

With --backing the volume is also unlocked (as mount does: a key file, or a
passphrase from the terminal or --passphrase-file) to check the MAC of
every record, which nobody without a master key can forge, and the log's
end is compared with the head anchor in BACKING/.coffer/audit-head.json,
which exposes a cut-off tail. --chain-only skips the unlock but still
checks the anchor. Verify writes nothing, not even to the audit log.`,
		Example: `  coffer audit verify /var/log/coffer/0f1e2d3c4b5a69788796a5b4c3d2e1f0.audit.jsonl
  coffer audit verify app.audit.jsonl --backing /srv/app.enc
  coffer audit verify app.audit.jsonl --backing /srv/app.enc --passphrase-file /root/pass.txt`,
		Args: exactArgs("LOGFILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.logFile = args[0]
			return runAuditVerify(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.backing, "backing", "", "the volume's backing directory: check MACs and the head anchor")
	f.BoolVar(&opts.chainOnly, "chain-only", false, "with --backing, check the anchor but do not unlock")
	f.StringVar(&opts.master, "master", "", "unlock only with this master key ID")
	f.StringVar(&opts.passphraseFile, "passphrase-file", "",
		"read the passphrase from this file (mode 0600) instead of the terminal")
	opts.masterFlags.add(f)
	return cmd
}

// runAuditVerify verifies the log and prints a summary.
func runAuditVerify(ctx context.Context, a *app, opts auditVerifyOptions) error {
	if opts.backing == "" && (opts.chainOnly || opts.master != "" || opts.passphraseFile != "") {
		return usageErrorf("--chain-only, --master and --passphrase-file need --backing")
	}
	f, err := os.Open(opts.logFile)
	if err != nil {
		return fmt.Errorf("failed to open audit log: %w", err)
	}
	defer f.Close()

	vopts, err := verifyOptions(ctx, a, opts)
	if err != nil {
		return err
	}
	rep, err := audit.Verify(f, vopts)
	var be *audit.BreakError
	if errors.As(err, &be) {
		return withHints(fmt.Errorf("audit log %s is broken at %w", opts.logFile, be),
			"see it with: coffer audit show "+shellQuote(opts.logFile)+
				"; docs/audit.md explains each finding")
	}
	if err != nil {
		return err
	}
	printVerifyReport(a.stdout, opts, vopts, rep)
	return nil
}

// verifyOptions reads the anchor and unlocks the volume when --backing
// is given.
func verifyOptions(ctx context.Context, a *app, opts auditVerifyOptions) (audit.VerifyOptions, error) {
	var v audit.VerifyOptions
	if opts.backing == "" {
		return v, nil
	}
	cfg, err := readConfig(opts.backing)
	if err != nil {
		return v, err
	}
	v.Volume = cfg.VolumeID
	if v.Anchor, err = audit.ReadAnchor(opts.backing); err != nil {
		return v, err
	}
	if v.Anchor == nil {
		a.log.Warn().Str("backing", opts.backing).Msg("the volume has no audit head anchor")
	}
	if opts.chainOnly {
		return v, nil
	}
	ring, err := unlockForAudit(ctx, a, opts, cfg)
	if err != nil {
		return v, err
	}
	v.Keys = ring
	return v, nil
}

// unlockForAudit opens the ring to check MACs. It records nothing: verify
// leaves the log it checks untouched.
func unlockForAudit(ctx context.Context, a *app, opts auditVerifyOptions,
	cfg *keys.Config) (*keys.Ring, error) {
	mopts := opts.masterFlags.options()
	mopts.Backing = opts.backing
	mopts.Passphrase = func(context.Context, masterkey.PassphraseRequest) (*keys.Secret, error) {
		if opts.passphraseFile != "" {
			return readPassphraseFile(opts.passphraseFile)
		}
		return promptPassphrase(a, fmt.Sprintf("Passphrase for volume %s: ", cfg.VolumeID), false)
	}
	uo := keys.UnlockOptions{Only: opts.master, Logger: a.log}
	if opts.master == "" {
		uo.SkipKind = recovery.Kind // a recovery key is used only when named
	}
	ring, _, err := keys.Unlock(ctx, cfg, masterkey.Opener(ctx, mopts), uo)
	if err != nil {
		hints := []string{"to check the chain and the anchor without unlocking, add --chain-only"}
		if errors.Is(err, masterkey.ErrNoPassphrase) || errors.Is(err, errNoTerminal) {
			hints = append(hints, "pass --passphrase-file FILE to unlock with a passphrase")
		}
		return nil, withHints(fmt.Errorf("failed to unlock volume to check MACs: %w", err), hints...)
	}
	return ring, nil
}

func printVerifyReport(w io.Writer, opts auditVerifyOptions, v audit.VerifyOptions, rep *audit.Report) {
	fmt.Fprintf(w, "audit log %s is intact\n", opts.logFile)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "volume\t%s\n", rep.Volume)
	fmt.Fprintf(tw, "records\t%d, %s to %s\n", rep.Records, rep.First.Format(time.RFC3339),
		rep.Last.Format(time.RFC3339))
	fmt.Fprintf(tw, "events\t%s\n", eventCounts(rep.Events))
	switch {
	case v.Keys != nil:
		fmt.Fprintf(tw, "MACs\t%d valid, %d by ring keys purged since, %d records without "+
			"(events that happen without the ring)\n", rep.MACChecked, rep.MACPurged, rep.Unkeyed)
	default:
		fmt.Fprintf(tw, "MACs\tnot checked: %d records carry one (give --backing to check them)\n",
			rep.MACUnchecked+rep.MACChecked)
	}
	switch {
	case v.Anchor == nil && opts.backing == "":
		fmt.Fprintf(tw, "head anchor\tnot checked (give --backing): a cut-off tail goes unseen\n")
	case v.Anchor == nil:
		fmt.Fprintf(tw, "head anchor\tnone in the volume: a cut-off tail goes unseen\n")
	case rep.Pending:
		fmt.Fprintf(tw, "head anchor\tmatches the last record, which a writer that died "+
			"did not confirm\n")
	default:
		fmt.Fprintf(tw, "head anchor\tmatches the last record\n")
	}
	_ = tw.Flush()
}

// eventCounts formats counts per event type, most frequent first.
func eventCounts(m map[audit.EventType]int) string {
	types := make([]audit.EventType, 0, len(m))
	for t := range m {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool {
		if m[types[i]] != m[types[j]] {
			return m[types[i]] > m[types[j]]
		}
		return types[i] < types[j]
	})
	parts := make([]string, len(types))
	for i, t := range types {
		parts[i] = fmt.Sprintf("%s %d", t, m[t])
	}
	return strings.Join(parts, ", ")
}

type auditShowOptions struct {
	logFile string
	since   string
	events  []string
	key     string
	json    bool
}

func newAuditShowCommand(a *app) *cobra.Command {
	var opts auditShowOptions
	cmd := &cobra.Command{
		Use:   "show LOGFILE [--since TIME] [--event EVENT] [--key ID] [--json]",
		Short: "List the records of an audit log, filtered",
		Long: `List the records of the audit log LOGFILE as a table, oldest first, or with
--json as the log's own lines. Show checks nothing: use "coffer audit
verify" for that. Lines that are not records are reported on stderr.

--since takes an RFC 3339 time (2026-12-04T09:00:00Z), a date (2026-12-04)
or a duration back from now (36h). --event takes event names, comma
separated or repeated (init, mount, unmount, unlock, integrity,
master-added, rotation-started, ...). --key matches a master key ID or a
ring key ID.`,
		Example: `  coffer audit show app.audit.jsonl --since 24h
  coffer audit show app.audit.jsonl --event unlock,integrity
  coffer audit show app.audit.jsonl --key 1a2b3c4d --json`,
		Args: exactArgs("LOGFILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.logFile = args[0]
			return runAuditShow(a, opts, time.Now())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.since, "since", "", "only records from this time on (RFC 3339, date, or duration ago)")
	f.StringSliceVar(&opts.events, "event", nil, "only these events")
	f.StringVar(&opts.key, "key", "", "only records naming this master key or ring key ID")
	f.BoolVar(&opts.json, "json", false, "print the matching lines as they are in the log")
	return cmd
}

// recordFilter selects the records show prints.
type recordFilter struct {
	since  time.Time
	events map[audit.EventType]bool
	key    string
}

func (o auditShowOptions) filter(now time.Time) (recordFilter, error) {
	f := recordFilter{key: o.key}
	if o.since != "" {
		t, err := parseSince(o.since, now)
		if err != nil {
			return f, err
		}
		f.since = t
	}
	if len(o.events) > 0 {
		f.events = map[audit.EventType]bool{}
		for _, e := range o.events {
			t := audit.EventType(strings.TrimSpace(e))
			if !slices.Contains(audit.EventTypes, t) {
				names := make([]string, len(audit.EventTypes))
				for i, k := range audit.EventTypes {
					names[i] = string(k)
				}
				return f, withHints(usageErrorf("unknown event %q for --event", e),
					"events: "+strings.Join(names, ", "))
			}
			f.events[t] = true
		}
	}
	return f, nil
}

// parseSince accepts an RFC 3339 time, a date (midnight UTC) or a
// duration back from now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usageErrorf("--since %q is neither an RFC 3339 time, a date "+
		"(YYYY-MM-DD) nor a duration such as 36h", s)
}

func (f recordFilter) match(r audit.Record) bool {
	if !f.since.IsZero() && r.Time.Before(f.since) {
		return false
	}
	if f.events != nil && !f.events[r.Event] {
		return false
	}
	if f.key == "" {
		return true
	}
	id := strconv.FormatUint(uint64(r.RingKey), 10)
	return r.Master == f.key || (r.RingKey != 0 && id == f.key)
}

// runAuditShow prints the records of the log that pass the filters.
func runAuditShow(a *app, opts auditShowOptions, now time.Time) error {
	filter, err := opts.filter(now)
	if err != nil {
		return err
	}
	f, err := os.Open(opts.logFile)
	if err != nil {
		return fmt.Errorf("failed to open audit log: %w", err)
	}
	defer f.Close()

	var tw *tabwriter.Writer
	if !opts.json {
		tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tEVENT\tOUTCOME\tMASTER\tRING KEY\tBY\tDETAIL")
	}
	bad := 0
	err = audit.Scan(f, func(line int, raw []byte, r audit.Record, err error) error {
		if err != nil {
			bad++
			fmt.Fprintf(a.stderr, "coffer: warning: line %d is not a record: %v\n", line, err)
			return nil
		}
		if !filter.match(r) {
			return nil
		}
		if opts.json {
			_, err := fmt.Fprintf(a.stdout, "%s\n", raw)
			return err
		}
		printRecordRow(tw, r)
		return nil
	})
	if tw != nil {
		_ = tw.Flush()
	}
	if err != nil {
		return fmt.Errorf("failed to read audit log: %w", err)
	}
	if bad > 0 {
		return withHints(fmt.Errorf("%d lines of %s are not records", bad, opts.logFile),
			"check the log with: coffer audit verify "+shellQuote(opts.logFile))
	}
	return nil
}

// printRecordRow prints one record as a table row.
func printRecordRow(w io.Writer, r audit.Record) {
	ringKey := ""
	if r.RingKey != 0 {
		ringKey = strconv.FormatUint(uint64(r.RingKey), 10)
	}
	by := r.User
	if by == "" {
		by = "uid " + strconv.Itoa(r.UID)
	}
	by += "@" + r.Host
	// Every string comes from the log file, which is not to be trusted
	// with the terminal.
	fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq,
		r.Time.UTC().Format(time.RFC3339), printable(string(r.Event)), printable(string(r.Outcome)),
		printable(dash(r.Master)), dash(ringKey), printable(by), printable(dash(recordDetail(r))))
}

// recordDetail sums up the path, count, details and reason of a record.
func recordDetail(r audit.Record) string {
	var parts []string
	if r.Path != "" {
		parts = append(parts, r.Path)
	}
	if r.Count != 0 {
		parts = append(parts, "count="+strconv.FormatUint(r.Count, 10))
	}
	names := make([]string, 0, len(r.Detail))
	for k := range r.Detail {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		parts = append(parts, k+"="+r.Detail[k])
	}
	if r.Reason != "" {
		parts = append(parts, "reason: "+r.Reason)
	}
	return strings.Join(parts, " ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type auditConfigOptions struct {
	backing    string
	log        string
	defaultLog bool
	syslog     bool
	syslogSet  bool
}

func newAuditConfigCommand(a *app) *cobra.Command {
	var opts auditConfigOptions
	cmd := &cobra.Command{
		Use:   "config BACKING [--log FILE | --default-log] [--syslog=true|false]",
		Short: "Show or change where a volume keeps its audit log",
		Long: `Show the audit settings of the volume in BACKING (the log file and whether
records are copied to syslog), or change them.

--log FILE moves the audit trail to FILE from the next record on; the old
log stays where it is, and both get an audit-config record naming the
other. The head anchor then follows the new log. --default-log goes back to
the default path. --syslog=true copies every record to the local syslog
daemon (facility authpriv, tag coffer-audit), where a remote collector can
keep it out of reach of anyone who can edit the log file.`,
		Example: `  coffer audit config /srv/app.enc
  coffer audit config /srv/app.enc --log /var/log/coffer/app.audit.jsonl --syslog`,
		Args: exactArgs("BACKING"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing = args[0]
			opts.syslogSet = cmd.Flags().Changed("syslog")
			return runAuditConfig(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.log, "log", "", "keep the audit log in this file from now on")
	f.BoolVar(&opts.defaultLog, "default-log", false, "keep the audit log in the default file")
	f.BoolVar(&opts.syslog, "syslog", false, "copy every record to the local syslog")
	return cmd
}

// runAuditConfig prints or changes the audit settings of a volume.
func runAuditConfig(ctx context.Context, a *app, opts auditConfigOptions) error {
	if opts.log != "" && opts.defaultLog {
		return usageErrorf("--log and --default-log exclude each other")
	}
	cfg, err := readConfig(opts.backing)
	if err != nil {
		return err
	}
	old, err := audit.ReadSettings(opts.backing)
	if err != nil {
		return err
	}
	next, err := opts.apply(old)
	if err != nil {
		return err
	}
	// --log naming the configured log again starts it again when it is not
	// used (renamed away by log rotation, say).
	_, notUsed, err := audit.Where(opts.backing, cfg.VolumeID, volumeMounts(opts.backing))
	if err != nil {
		return err
	}
	if next != old || opts.log != "" && notUsed != nil {
		if err := keys.CheckReserved(opts.backing); err != nil {
			return err
		}
		chosen := ""
		if opts.log != "" {
			chosen = next.Log
		}
		err := changeAuditSettings(ctx, a, opts.backing, cfg.VolumeID, old, next, chosen)
		if err != nil {
			return err
		}
	}
	where, notUsed, err := audit.Where(opts.backing, cfg.VolumeID, volumeMounts(opts.backing))
	if err != nil {
		return err
	}
	if notUsed != nil {
		warnLogNotUsed(a, opts.backing, next.Log, notUsed)
	}
	return printAuditSettings(a.stdout, next, where, notUsed != nil)
}

// apply returns the settings the flags ask for.
func (o auditConfigOptions) apply(s audit.Settings) (audit.Settings, error) {
	switch {
	case o.defaultLog:
		s.Log = ""
	case o.log != "":
		path, err := auditLogFlag("--log", o.log, o.backing)
		if err != nil {
			return s, err
		}
		s.Log = path
	}
	if o.syslogSet {
		s.Syslog = o.syslog
	}
	return s, nil
}

// changeAuditSettings records the change in the old log, saves the new
// settings, and records it again in the new log. A new log starts a new
// head anchor. chosen is the log --log named, or empty.
func changeAuditSettings(ctx context.Context, a *app, backing string, vol keys.VolumeID,
	old, next audit.Settings, chosen string) error {
	oldPath, _, err := audit.Where(backing, vol, volumeMounts(backing))
	if err != nil {
		return err
	}
	// A log named in the settings is taken up only when the user names it
	// now (chosen): a change of the syslog copy alone keeps the log in use.
	newPath := oldPath
	if next.Log != old.Log || chosen != "" {
		if newPath, err = next.Path(vol); err != nil {
			return err
		}
	}
	detail := map[string]string{"log": newPath, "previous_log": oldPath,
		"syslog": strconv.FormatBool(next.Syslog)}
	// A configured log that is not used is left too, for the default log.
	moved := oldPath != newPath || old.Log != next.Log
	if moved {
		// Everything that can be checked is checked before anything
		// changes: a refused log leaves the settings, the anchor and
		// both files as they were.
		if err := checkAuditWritable(newPath, next.Log == ""); err != nil {
			return err
		}
		if err := audit.CheckLog(newPath, vol); err != nil {
			return withHints(fmt.Errorf("failed to change the audit log: %w", err),
				"choose a new or empty file, or a log this volume wrote before")
		}
	}
	// An old log that is gone is not created again just to record that the
	// volume leaves it: it may have been inside a mount of the volume, and
	// would appear, in the clear, in the bare mount point.
	var err1 error
	if _, serr := os.Lstat(oldPath); oldPath == newPath {
		// The record in the new log below is in the same file.
	} else if moved && errors.Is(serr, fs.ErrNotExist) {
		err1 = fmt.Errorf("%s does not exist, and is not created", oldPath)
	} else {
		err1 = recordSettings(ctx, a, backing, vol, detail, "")
	}
	if err := err1; err != nil {
		if !moved {
			return err
		}
		// A log that cannot be written must not keep the volume from
		// moving away from it; the new log records why.
		fmt.Fprintf(a.stderr, "coffer: warning: the change is not recorded in the old audit "+
			"log: %v\n", err)
		detail["previous_log_error"] = err.Error()
	}
	if err := audit.WriteSettings(backing, next); err != nil {
		return err
	}
	if !moved {
		return nil
	}
	if err := os.Remove(audit.AnchorPath(backing)); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = audit.WriteSettings(backing, old)
		return fmt.Errorf("failed to reset the audit head anchor: %w", err)
	}
	// The new log's first record is this one: later commands use a
	// configured log only when it starts with a record of this volume.
	if err := recordSettings(ctx, a, backing, vol, detail, chosen); err != nil {
		if rerr := audit.WriteSettings(backing, old); rerr != nil {
			return fmt.Errorf("failed to record the change in the new audit log (%w), and "+
				"failed to restore the old settings: %w", err, rerr)
		}
		return fmt.Errorf("failed to record the change in the new audit log, so the old "+
			"settings stay: %w", err)
	}
	return nil
}

// recordSettings writes an audit-config record to the volume's current log;
// chosen, if not empty, is the log the user just named (audit.Options).
func recordSettings(ctx context.Context, a *app, backing string, vol keys.VolumeID,
	detail map[string]string, chosen string) error {
	l, err := openAuditOpts(a, backing, vol, audit.Options{Chosen: chosen})
	if err != nil {
		return err
	}
	err = l.Record(ctx, audit.Event{Type: audit.EventAuditConfig, Detail: detail})
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	return err
}

// printAuditSettings prints settings s, with path the log in use;
// notUsed says that the configured log is not used.
func printAuditSettings(w io.Writer, s audit.Settings, path string, notUsed bool) error {
	where := path
	switch {
	case notUsed:
		where += " (default; configured " + s.Log + " not used)"
	case s.Log == "":
		where += " (default)"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "audit log\t%s\n", printable(where))
	fmt.Fprintf(tw, "syslog copy\t%s\n", map[bool]string{true: "on", false: "off"}[s.Syslog])
	return tw.Flush()
}
