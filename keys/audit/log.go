package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/cofferfs/coffer/keys"
)

// Keyring derives the MAC keys of a log. *keys.Ring implements it.
type Keyring interface {
	// Primary returns the ring's primary key, which MACs new records.
	Primary() keys.KeyInfo
	// DeriveKey returns the key for purpose derived from ring key id.
	DeriveKey(id uint32, purpose string) ([]byte, error)
}

// Syslogger is where copies of the records go: *syslog.Writer.
type Syslogger interface {
	Info(msg string) error
	Close() error
}

// Options tunes Open.
type Options struct {
	// Backing is the volume's backing directory, whose .coffer folder
	// holds the head anchor. Empty leaves the anchor alone.
	Backing string
	// Keys, if not nil, MACs every record; SetKeys sets it later.
	Keys Keyring
	// Syslog, if not nil, receives a copy of every line (a *syslog.Writer
	// from log/syslog, on Unix).
	Syslog Syslogger
	// Logger receives warnings about the anchor and the syslog copy; the
	// zero value discards them.
	Logger zerolog.Logger
	// AnchorMismatch, if not nil, is called instead of logging a warning
	// when the log does not end where the head anchor says: the log was
	// changed behind coffer's back, or two copies of one backing
	// directory share it. Commands use it to say so in one plain line.
	AnchorMismatch func(path string, logSeq, anchorSeq uint64)

	// Exclude lists folders besides the backing directory in which
	// OpenVolume does not use a configured log (the volume's mount points).
	Exclude []string
	// Chosen is a log path that the command's user named just now (init
	// --audit-log, audit config --log). When the settings name it,
	// OpenVolume opens it like the default log: created if missing, and
	// it may be empty. Other configured logs must pass openConfigured.
	Chosen string
	// NotUsed, if not nil, is called when OpenVolume does not use the
	// configured log at path and writes to the default log instead; why
	// wraps ErrLogNotUsed. Nil logs a warning.
	NotUsed func(path string, why error)

	now        func() time.Time // for tests
	ownsSyslog bool             // Close closes Syslog
}

// Log is an open audit log. Its methods are safe for concurrent use, and
// other processes may append to the same file at the same time.
type Log struct {
	path string
	vol  keys.VolumeID
	opts Options
	who  identity

	mu           sync.Mutex
	f            *os.File
	keys         Keyring
	written      int  // records this Log appended
	anchorFailed bool // a head anchor update failed: warned once
}

// identity is who writes: fixed for the life of the process.
type identity struct {
	host string
	uid  int
	user string
	pid  int
}

func whoAmI() identity {
	id := identity{uid: os.Getuid(), pid: os.Getpid()}
	id.host, _ = os.Hostname()
	if u, err := user.LookupId(strconv.Itoa(id.uid)); err == nil {
		id.user = u.Username
	}
	return id
}

// Open opens or creates (mode 0600) the audit log of volume vol at path for
// appending. The folder must exist.
func Open(path string, vol keys.VolumeID, opts Options) (*Log, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|oNoFollow, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to open audit log: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("failed to open audit log: %s is not a regular file", path)
	}
	return newLog(f, path, vol, opts), nil
}

// newLog wraps the open log file f.
func newLog(f *os.File, path string, vol keys.VolumeID, opts Options) *Log {
	if opts.now == nil {
		opts.now = time.Now
	}
	return &Log{path: path, vol: vol, opts: opts, who: whoAmI(), f: f, keys: opts.Keys}
}

// Path returns the log's file name.
func (l *Log) Path() string { return l.path }

// SetKeys makes the log MAC the records it appends from now on, with keys
// derived from the ring's primary key. A nil k stops MACs.
func (l *Log) SetKeys(k Keyring) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = k
}

// Record appends one record for e. Events other than the Unkeyed ones need
// SetKeys first, or Verify with keys reports them as forged.
func (l *Log) Record(ctx context.Context, e Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("failed to write audit record: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("failed to write audit record: log is closed")
	}
	return l.append(newRecord(e))
}

// Close writes a closing checkpoint when the log is keyed and this Log
// wrote any record, and closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	var err error
	if l.keys != nil && l.written > 0 {
		err = l.append(Record{Event: EventCheckpoint, Outcome: OutcomeOK,
			Count: uint64(l.written)})
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	if l.opts.ownsSyslog {
		_ = l.opts.Syslog.Close()
	}
	return err
}

// append links r to the log's last line and appends it, holding the file
// lock from reading the tail to updating the anchor.
func (l *Log) append(r Record) error {
	if err := lockFile(l.f); err != nil {
		return fmt.Errorf("failed to lock audit log: %w", err)
	}
	defer unlockFile(l.f)

	t, err := l.tail()
	if err != nil {
		return err
	}
	line, err := l.line(r, t)
	if err != nil {
		return err
	}

	anchor := l.loadAnchor(t)
	if anchor != nil {
		l.saveAnchor(Anchor{Seq: t.seq, Hash: t.hash, PendingSeq: t.seq + 1,
			PendingHash: LineHash(line)})
	}
	if _, err := l.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("failed to write audit record: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("failed to sync audit log: %w", err)
	}
	if anchor != nil {
		l.saveAnchor(Anchor{Seq: t.seq + 1, Hash: LineHash(line)})
	}
	l.written++
	l.copyToSyslog(line)
	return nil
}

// line completes r as the record after t and encodes it.
func (l *Log) line(r Record, t tail) ([]byte, error) {
	r.Seq = t.seq + 1
	r.Time = l.opts.now().UTC()
	r.Host, r.UID, r.User, r.PID = l.who.host, l.who.uid, l.who.user, l.who.pid
	r.Volume = l.vol
	r.Prev = t.hash
	if l.keys == nil {
		return r.encode(0, nil)
	}
	id := l.keys.Primary().ID
	key, err := l.keys.DeriveKey(id, MACPurpose)
	if err != nil {
		return nil, fmt.Errorf("failed to derive audit MAC key: %w", err)
	}
	defer clear(key)
	return r.encode(id, key)
}

// tail is the end of the chain: the last record's seq and line hash.
type tail struct {
	seq  uint64
	hash string
}

// tail reads the last line of the log. A last line without a newline (torn
// by a crash) is closed with one, so that it stays a line of its own that
// Verify reports, and the new record links to it.
func (l *Log) tail() (tail, error) {
	fi, err := l.f.Stat()
	if err != nil {
		return tail{}, fmt.Errorf("failed to read audit log: %w", err)
	}
	size := fi.Size()
	if size == 0 {
		return tail{hash: Genesis(l.vol)}, nil
	}

	n := min(size, 4*maxLine)
	buf := make([]byte, n)
	if _, err := l.f.ReadAt(buf, size-n); err != nil {
		return tail{}, fmt.Errorf("failed to read audit log: %w", err)
	}
	if buf[len(buf)-1] != '\n' {
		if _, err := l.f.Write([]byte{'\n'}); err != nil {
			return tail{}, fmt.Errorf("failed to close torn audit record: %w", err)
		}
		buf = append(buf, '\n')
	}
	return l.lastRecord(buf, n == size)
}

// lastRecord finds the last line in buf (which ends with a newline) and
// the seq of the last record that parses; whole says buf is the whole file.
func (l *Log) lastRecord(buf []byte, whole bool) (tail, error) {
	lines := bytes.SplitAfter(buf[:len(buf)-1], []byte("\n"))
	if !whole {
		lines = lines[1:] // the first may be a fragment
	}
	if len(lines) == 0 {
		return tail{}, fmt.Errorf("failed to read audit log %s: last line is longer than %d bytes",
			l.path, 4*maxLine)
	}
	last := lines[len(lines)-1]
	t := tail{hash: LineHash(last)}
	for i := len(lines) - 1; i >= 0; i-- {
		var r struct {
			Seq    uint64        `json:"seq"`
			Volume keys.VolumeID `json:"volume"`
		}
		if json.Unmarshal(lines[i], &r) != nil || r.Seq == 0 {
			continue
		}
		if r.Volume != l.vol {
			return tail{}, fmt.Errorf("failed to append to audit log %s: it belongs to volume %s",
				l.path, r.Volume)
		}
		t.seq = r.Seq + uint64(len(lines)-1-i)
		return t, nil
	}
	t.seq = uint64(len(lines))
	return t, nil
}

// loadAnchor returns the anchor to keep up to date, or nil when there is
// none to keep: no backing directory, or an anchor that t does not match.
// A mismatch means the log was changed behind the writers' backs; the
// anchor is then left as it is, as evidence for Verify.
func (l *Log) loadAnchor(t tail) *Anchor {
	if l.opts.Backing == "" {
		return nil
	}
	a, err := ReadAnchor(l.opts.Backing)
	if err != nil {
		l.opts.Logger.Warn().Err(err).Msg("audit head anchor unreadable; leaving it as it is")
		return nil
	}
	if a == nil {
		return &Anchor{}
	}
	if t.seq == 0 && a.Seq == 0 || a.matches(t.seq, t.hash) {
		return a
	}
	if l.opts.AnchorMismatch != nil {
		l.opts.AnchorMismatch(l.path, t.seq, a.Seq)
		return nil
	}
	l.opts.Logger.Warn().Str("log", l.path).Uint64("log_seq", t.seq).Uint64("anchor_seq", a.Seq).
		Msg("audit log does not end where its head anchor says; leaving the anchor as evidence " +
			"(run coffer audit verify)")
	return nil
}

// saveAnchor writes a, warning once per Log when that fails: the record is
// appended all the same, so the log then runs past the anchor, and later
// writers say so until the anchor is reset.
func (l *Log) saveAnchor(a Anchor) {
	err := writeAnchor(l.opts.Backing, a)
	if err == nil || l.anchorFailed {
		return
	}
	l.anchorFailed = true
	l.opts.Logger.Warn().Err(err).Msg("failed to update audit head anchor: the audit log now " +
		"runs past it, and later commands warn about that until it is removed (see the audit " +
		"verify hint they print)")
}

func (l *Log) copyToSyslog(line []byte) {
	if l.opts.Syslog == nil {
		return
	}
	if err := l.opts.Syslog.Info(string(line)); err != nil {
		l.opts.Logger.Warn().Err(err).Msg("failed to copy audit record to syslog")
	}
}
