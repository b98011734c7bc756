package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/keys"
)

type statusOptions struct {
	backing string
	json    bool
	scan    bool
}

func newStatusCommand(a *app) *cobra.Command {
	var opts statusOptions
	cmd := &cobra.Command{
		Use:   "status BACKING",
		Short: "Show a volume's configuration, master keys and ring keys",
		Long: `Show what BACKING/.coffer/volume.json records: volume ID, config and file
format versions, creation time, the master keys that can unlock the volume
(ID, kind, URI with any secret redacted, when added), the ring keys (ID,
state, creation time, age in days) and the ring generation, and where the
volume is mounted now. No key is needed: status reads only public metadata.`,
		Example: `  coffer status /srv/app.enc
  coffer status /srv/app.enc --json | jq .ring_keys`,
		Args: exactArgs("BACKING"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing = args[0]
			return runStatus(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.json, "json", false, "print the status as one JSON object")
	cmd.Flags().BoolVar(&opts.scan, "scan", false,
		"count file headers and directory records per ring key (reads every file's header)")
	return cmd
}

// volumeStatus is what status reports; its JSON form is the --json output.
type volumeStatus struct {
	VolumeID      string         `json:"volume_id"`
	Backing       string         `json:"backing"`
	ConfigVersion int            `json:"config_version"`
	FormatVersion int            `json:"format_version"`
	Names         string         `json:"names"`
	Created       time.Time      `json:"created"`
	Generation    uint64         `json:"generation"`
	Masters       []masterStatus `json:"masters"`
	RingKeys      []ringKeyInfo  `json:"ring_keys"`
	MountedOn     []string       `json:"mounted_on"`
	StaleMounts   []string       `json:"stale_mounts,omitempty"`
	NotAnswering  []string       `json:"not_answering,omitempty"`
	AuditLog      string         `json:"audit_log"`
	Rotation      rotationStatus `json:"rotation"`
}

type masterStatus struct {
	ID    string    `json:"id"`
	Kind  string    `json:"kind"`
	URI   string    `json:"uri"`
	Added time.Time `json:"added"`
}

type ringKeyInfo struct {
	ID      uint32    `json:"id"`
	State   string    `json:"state"`
	Created time.Time `json:"created"`
	AgeDays int       `json:"age_days"`
}

// runStatus prints the status of the volume in opts.backing.
func runStatus(_ context.Context, a *app, opts statusOptions) error {
	cfg, err := readConfig(opts.backing)
	if err != nil {
		return err
	}
	backing, err := filepath.Abs(opts.backing)
	if err != nil {
		return fmt.Errorf("failed to resolve %s: %w", opts.backing, err)
	}
	st := newVolumeStatus(backing, cfg, time.Now())
	st.MountedOn, err = mountsOf(opts.backing)
	if err != nil {
		a.log.Warn().Err(err).Msg("failed to find where the volume is mounted")
	}
	acks, err := keys.MountAcks(opts.backing)
	if err != nil {
		a.log.Warn().Err(err).Msg("failed to read the mount records")
	}
	var stopped []stoppedMount
	st.MountedOn, st.StaleMounts, stopped = splitStale(st.MountedOn, acks)
	for _, s := range stopped {
		st.NotAnswering = append(st.NotAnswering, s.dir)
	}
	st.AuditLog, err = auditLogPath(a, opts.backing, cfg.VolumeID)
	if err != nil {
		a.log.Warn().Err(err).Msg("failed to find the audit log")
	}

	st.Rotation, err = rotationOf(opts.backing, cfg, time.Now(), opts.scan)
	if err != nil {
		return err
	}
	if st.Rotation.Due {
		a.log.Warn().Int("max_key_age_days", st.Rotation.MaxKeyAgeDays).
			Msg("the primary ring key is older than the policy allows: run coffer rotate")
	}

	if opts.json {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	if err := st.print(a.stdout, stopped); err != nil {
		return err
	}
	st.Rotation.print(a.stdout, st.Generation)
	return nil
}

// newVolumeStatus gathers the status of cfg, with key ages as of now.
func newVolumeStatus(backing string, cfg *keys.Config, now time.Time) volumeStatus {
	st := volumeStatus{
		VolumeID:      cfg.VolumeID.String(),
		Backing:       backing,
		ConfigVersion: cfg.Version,
		FormatVersion: cfg.Format,
		Names:         keys.NamesPlaintext,
		Created:       cfg.Created,
		Generation:    cfg.Ring.Generation,
		Masters:       []masterStatus{},
		RingKeys:      []ringKeyInfo{},
		MountedOn:     []string{},
	}
	if cfg.EncryptedNames() {
		st.Names = keys.NamesEncrypted
	}
	for _, m := range cfg.Masters {
		st.Masters = append(st.Masters, masterStatus{ID: m.ID, Kind: m.Kind,
			URI: keys.RedactURI(m.URI), Added: m.Added})
	}
	for _, k := range cfg.Ring.Keys {
		st.RingKeys = append(st.RingKeys, ringKeyInfo{ID: k.ID, State: string(k.State),
			Created: k.Created, AgeDays: int(now.Sub(k.Created) / (24 * time.Hour))})
	}
	return st
}

// print writes the status as aligned text.
func (st volumeStatus) print(w io.Writer, stopped []stoppedMount) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "volume:\t%s\n", st.VolumeID)
	fmt.Fprintf(tw, "backing:\t%s\n", printable(st.Backing))
	fmt.Fprintf(tw, "config version:\t%d\n", st.ConfigVersion)
	fmt.Fprintf(tw, "file format:\t%d\n", st.FormatVersion)
	fmt.Fprintf(tw, "names:\t%s\n", st.Names)
	fmt.Fprintf(tw, "created:\t%s\n", st.Created.Format(time.RFC3339))
	fmt.Fprintf(tw, "ring generation:\t%d\n", st.Generation)
	mounted := "no"
	if len(st.MountedOn) > 0 {
		mounted = strings.Join(st.MountedOn, ", ")
	}
	fmt.Fprintf(tw, "mounted on:\t%s\n", printable(mounted))
	for _, m := range st.StaleMounts {
		fmt.Fprintf(tw, "stale mount:\t%s (the mount process died): fusermount3 -u %s\n",
			printable(m), shellQuote(m))
	}
	for _, m := range stopped {
		fmt.Fprintf(tw, "not answering:\t%s (the mount process %d is stopped): kill -CONT %d\n",
			printable(m.dir), m.pid, m.pid)
	}
	if st.AuditLog != "" {
		fmt.Fprintf(tw, "audit log:\t%s\n", printable(st.AuditLog))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nmaster keys:\n")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  ID\tKIND\tADDED\tURI\n")
	for _, m := range st.Masters {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", printable(m.ID), printable(m.Kind),
			m.Added.Format(time.RFC3339), printable(m.URI))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	// status holds no key: the dates are volume.json's public copy, which
	// anyone who can write the backing directory can edit; rotate --if-due
	// checks the policy against the sealed ring instead.
	fmt.Fprintf(w, "\nring keys (dates as volume.json lists them, unverified):\n")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  ID\tSTATE\tCREATED\tAGE\n")
	var future []string
	for _, k := range st.RingKeys {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%d days\n", k.ID, k.State, k.Created.Format(time.RFC3339), k.AgeDays)
		if k.AgeDays < 0 {
			future = append(future, strconv.FormatUint(uint64(k.ID), 10))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(future) > 0 {
		fmt.Fprintf(w, "  warning: ring key %s is dated in the future: volume.json was edited; "+
			"coffer rotate --if-due checks the sealed dates\n", strings.Join(future, ", "))
	}
	return nil
}

// readConfig reads the volume config of backing, with advice for the usual
// failures.
func readConfig(backing string) (*keys.Config, error) {
	cfg, err := keys.ReadConfig(backing)
	switch {
	case err == nil:
		return cfg, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, withHints(err, "check the path of the backing directory")
	case errors.Is(err, keys.ErrNotInitialized) && hasConfigDir(backing):
		dir := shellQuote(filepath.Join(backing, keys.DirName))
		return nil, withHints(err, "the "+keys.DirName+" folder is left from an interrupted init: "+
			"remove it (rmdir "+dir+") and run coffer init again")
	case errors.Is(err, keys.ErrNotInitialized):
		return nil, withHints(err, "initialise it: coffer init "+shellQuote(backing)+" --master URI")
	case errors.Is(err, keys.ErrUnsupportedVersion):
		return nil, withHints(err, "this volume was written by a newer coffer: upgrade coffer to use it")
	}
	return nil, err
}

// readConfigToWrite is readConfig for commands that write to the .coffer
// folder or mount the volume: it also refuses a .coffer folder whose fixed
// entries are symbolic links or of the wrong kind (keys.CheckReserved).
func readConfigToWrite(backing string) (*keys.Config, error) {
	cfg, err := readConfig(backing)
	if err != nil {
		return nil, err
	}
	if err := keys.CheckReserved(backing); err != nil {
		return nil, err
	}
	return cfg, nil
}

// hasConfigDir reports whether backing has a .coffer entry.
func hasConfigDir(backing string) bool {
	_, err := os.Lstat(filepath.Join(backing, keys.DirName))
	return err == nil
}

// stoppedMount is a mount whose server process is stopped (SIGSTOP or a
// debugger): it is mounted, but every access waits until it resumes.
type stoppedMount struct {
	dir string
	pid int
}

// splitStale separates the mount points whose FUSE server is gone (the
// kernel still lists them, but every access fails with ENOTCONN) and those
// whose server is stopped. It never touches a mount point: an access to a
// mount whose server is stopped would wait until the server resumes. The
// server of each mount point is found in the mount records (acks), and its
// state is read from /proc; a mount without a record counts as live.
func splitStale(mounts []string, acks []keys.Ack) (live, stale []string, stopped []stoppedMount) {
	live = []string{}
	host, _ := os.Hostname()
	for _, m := range mounts {
		pid := serverOf(m, host, acks)
		if pid == 0 {
			live = append(live, m)
			continue
		}
		switch processState(pid) {
		case procGone:
			stale = append(stale, m)
		case procStopped:
			stopped = append(stopped, stoppedMount{dir: m, pid: pid})
			live = append(live, m)
		default:
			live = append(live, m)
		}
	}
	return live, stale, stopped
}

// serverOf returns the PID of the process on host that records serving
// dir, or 0 if no record names it.
func serverOf(dir, host string, acks []keys.Ack) int {
	for _, a := range acks {
		if a.MountPoint == dir && a.Host == host && a.PID > 0 {
			return a.PID
		}
	}
	return 0
}
