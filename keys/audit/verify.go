package audit

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cofferfs/coffer/keys"
)

// Deriver derives the MAC keys that Verify checks records with. *keys.Ring
// implements it.
type Deriver interface {
	DeriveKey(id uint32, purpose string) ([]byte, error)
}

// VerifyOptions tunes Verify.
type VerifyOptions struct {
	// Keys, if not nil, checks every record's MAC: the volume's unlocked
	// ring. Without it only the chain is checked.
	Keys Deriver
	// Anchor, if not nil, is the volume's head anchor: the log must end
	// at the head it names.
	Anchor *Anchor
	// Volume, if not zero, is the volume the log must belong to.
	Volume keys.VolumeID
}

// BreakError reports the first record at which a log fails verification.
type BreakError struct {
	Line   int    // 1-based line number
	Seq    uint64 // the record's seq, 0 if it has none
	Reason string
}

// Error names the record and says why it is broken.
func (e *BreakError) Error() string {
	if e.Seq == 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("line %d (seq %d): %s", e.Line, e.Seq, e.Reason)
}

// Report summarises a log that verified.
type Report struct {
	Volume       keys.VolumeID
	Records      int
	First, Last  time.Time
	Events       map[EventType]int
	MACChecked   int  // records whose MAC was checked and is valid
	MACUnchecked int  // records with a MAC that was not checked (no keys)
	MACPurged    int  // records MACed with a ring key purged since (logged)
	Unkeyed      int  // records without a MAC (unkeyed events only)
	Anchored     bool // the log ends at the anchored head
	Pending      bool // ... at the pending one: the writer died before updating the anchor
}

// entry is one parsed line.
type entry struct {
	line int
	raw  []byte
	rec  Record
}

// Verify reads a whole log from r and checks it: every line a complete
// record, seq counting up from 1, each prev the hash of the line before (the
// first the volume's genesis), one volume throughout; with opts.Keys every
// MAC, and a MAC on every record but the Unkeyed events; with opts.Anchor
// the end of the log. It returns a *BreakError for the first broken record,
// or another error when r cannot be read.
func Verify(r io.Reader, opts VerifyOptions) (*Report, error) {
	entries, err := readEntries(r)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		if opts.Anchor != nil && opts.Anchor.Seq > 0 {
			return nil, &BreakError{Line: 1, Reason: fmt.Sprintf("log is empty, but the head "+
				"anchor says it held %d records: it was truncated or replaced", opts.Anchor.Seq)}
		}
		return nil, &BreakError{Line: 1, Reason: "log is empty"}
	}
	rep := summarise(entries)
	// An edited record breaks its own MAC and the next record's prev:
	// report whichever comes first.
	chainErr := checkChain(entries, opts.Volume)
	macErr := checkMACs(entries, opts.Keys, rep)
	if err := first(chainErr, macErr); err != nil {
		return nil, err
	}
	if err := checkAnchor(entries, opts.Anchor, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// readEntries splits r into lines and decodes each strictly.
func readEntries(r io.Reader) ([]entry, error) {
	br := bufio.NewReaderSize(r, maxLine)
	var out []entry
	for n := 1; ; n++ {
		raw, err := readLine(br)
		if errors.Is(err, io.EOF) && raw == nil {
			return out, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			var be *BreakError
			if errors.As(err, &be) {
				be.Line = n
			}
			return nil, err
		}
		if errors.Is(err, io.EOF) {
			return nil, &BreakError{Line: n, Reason: "last line has no newline: the record " +
				"is incomplete (torn by a crash, or the tail was cut)"}
		}
		e := entry{line: n, raw: raw}
		if err := decodeStrict(raw, &e.rec); err != nil {
			return nil, &BreakError{Line: n, Reason: "not a valid record: " + err.Error()}
		}
		out = append(out, e)
	}
}

// readLine returns the next line without its newline, refusing lines
// longer than maxLine. At the end it returns io.EOF, with the bytes of an
// unterminated last line if there are any.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, &BreakError{Reason: fmt.Sprintf("line is longer than %d bytes", maxLine)}
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) == 0:
			return nil, io.EOF
		case errors.Is(err, io.EOF):
			return line, io.EOF
		default:
			return nil, fmt.Errorf("failed to read audit log: %w", err)
		}
	}
}

func decodeStrict(raw []byte, r *Record) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(r); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the record")
	}
	switch {
	case r.Seq == 0:
		return errors.New("seq is missing")
	case r.Event == "":
		return errors.New("event is missing")
	case r.Outcome != OutcomeOK && r.Outcome != OutcomeFailed:
		return fmt.Errorf("outcome %q is neither ok nor failed", r.Outcome)
	case r.Time.IsZero():
		return errors.New("time is missing")
	}
	return nil
}

// first returns the error of the two that names the earlier line; an error
// that is not a *BreakError wins.
func first(a *BreakError, b error) error {
	var bb *BreakError
	switch {
	case b != nil && !errors.As(b, &bb):
		return b
	case a == nil:
		return b
	case bb == nil || a.Line <= bb.Line:
		return a
	}
	return bb
}

// checkChain checks seq, prev and volume of every record.
func checkChain(entries []entry, want keys.VolumeID) *BreakError {
	vol := entries[0].rec.Volume
	if want != (keys.VolumeID{}) && vol != want {
		return brk(entries[0], fmt.Sprintf("log belongs to volume %s, not %s", vol, want))
	}
	prev := Genesis(vol)
	for i, e := range entries {
		r := e.rec
		switch {
		case r.Volume != vol:
			return brk(e, fmt.Sprintf("volume %s differs from the log's volume %s", r.Volume, vol))
		case r.Seq != uint64(i+1):
			return brk(e, fmt.Sprintf("seq %d where %d was due: a record was deleted, inserted "+
				"or moved", r.Seq, i+1))
		case r.Prev != prev && i == 0:
			return brk(e, "prev is not the genesis hash of the volume: earlier records were "+
				"removed, or the record was edited")
		case r.Prev != prev:
			return brk(e, fmt.Sprintf("prev is not the hash of line %d: line %d was edited, "+
				"or this record was edited or moved", e.line-1, e.line-1))
		}
		prev = LineHash(e.raw)
	}
	return nil
}

func brk(e entry, reason string) *BreakError {
	return &BreakError{Line: e.line, Seq: e.rec.Seq, Reason: reason}
}

func summarise(entries []entry) *Report {
	rep := &Report{Volume: entries[0].rec.Volume, Records: len(entries),
		First: entries[0].rec.Time, Last: entries[len(entries)-1].rec.Time,
		Events: map[EventType]int{}}
	for _, e := range entries {
		rep.Events[e.rec.Event]++
	}
	return rep
}

// checkMACs checks each record's MAC with keys, or counts them when keys
// is nil. A MAC by a ring key that is no longer in the ring is accepted
// when a later record of the log is a valid key-purged record for that key:
// after its purge no writer uses the key, so a later record naming it is
// forged.
func checkMACs(entries []entry, k Deriver, rep *Report) error {
	if k == nil {
		for _, e := range entries {
			if e.rec.MAC != "" {
				rep.MACUnchecked++
			} else {
				rep.Unkeyed++
			}
		}
		return nil
	}

	c := macChecker{keys: k, cache: map[uint32][]byte{}}
	defer c.wipe()
	purged := c.purgedKeys(entries)
	for _, e := range entries {
		if err := c.check(e, purged, rep); err != nil {
			return err
		}
	}
	return nil
}

type macChecker struct {
	keys  Deriver
	cache map[uint32][]byte // derived MAC keys by ring key ID; nil: not in the ring
}

func (c *macChecker) wipe() {
	for _, k := range c.cache {
		clear(k)
	}
}

// key returns the MAC key of ring key id, or nil when the ring lacks it.
func (c *macChecker) key(id uint32) ([]byte, error) {
	if k, ok := c.cache[id]; ok {
		return k, nil
	}
	k, err := c.keys.DeriveKey(id, MACPurpose)
	if errors.Is(err, keys.ErrUnknownKey) {
		k, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	c.cache[id] = k
	return k, nil
}

// valid reports whether e carries a MAC that a ring key confirms.
func (c *macChecker) valid(e entry) bool {
	if e.rec.MAC == "" {
		return false
	}
	k, err := c.key(e.rec.MACKey)
	body, ok := macBody(e.raw, e.rec)
	if err != nil || k == nil || !ok {
		return false
	}
	mac, err := hex.DecodeString(e.rec.MAC)
	return err == nil && hmac.Equal(mac, computeMAC(k, body))
}

// purgedKeys returns the ring keys that valid key-purged records name,
// each with the line of the last such record. A key-purged record is valid
// when a ring key confirms its MAC, or when its MAC key was itself purged
// by a later valid record: rotation after rotation, each purge record is
// MACed with a key that a later rotation purges. Walking back from the end
// finds those later purges first.
func (c *macChecker) purgedKeys(entries []entry) map[uint32]int {
	purged := map[uint32]int{}
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.rec.Event != EventKeyPurged || e.rec.Outcome != OutcomeOK || e.rec.MAC == "" {
			continue
		}
		if _, seen := purged[e.rec.RingKey]; seen {
			continue
		}
		k, err := c.key(e.rec.MACKey)
		byPurged := err == nil && k == nil && purged[e.rec.MACKey] > e.line
		if c.valid(e) || byPurged {
			purged[e.rec.RingKey] = e.line
		}
	}
	return purged
}

func (c *macChecker) check(e entry, purged map[uint32]int, rep *Report) error {
	r := e.rec
	if r.MAC == "" {
		if !Unkeyed(r.Event) {
			return brk(e, fmt.Sprintf("%s record has no MAC: it was not written by a holder "+
				"of the ring (forged?)", r.Event))
		}
		rep.Unkeyed++
		return nil
	}
	k, err := c.key(r.MACKey)
	if err != nil {
		return fmt.Errorf("failed to derive audit MAC key: %w", err)
	}
	if k == nil {
		if line, ok := purged[r.MACKey]; !ok || line < e.line {
			return brk(e, fmt.Sprintf("MAC names ring key %d, which the ring does not hold "+
				"and no later valid key-purged record names (forged?)", r.MACKey))
		}
		rep.MACPurged++
		return nil
	}
	if !c.valid(e) {
		return brk(e, "MAC does not match: the record was edited or forged")
	}
	rep.MACChecked++
	return nil
}

// checkAnchor checks that the log ends at the anchored head.
func checkAnchor(entries []entry, a *Anchor, rep *Report) error {
	if a == nil {
		return nil
	}
	last := entries[len(entries)-1]
	hash := LineHash(last.raw)
	switch {
	case a.Seq == last.rec.Seq && a.Hash == hash:
		rep.Anchored = true
		return nil
	case a.PendingSeq == last.rec.Seq && a.PendingHash == hash:
		rep.Anchored, rep.Pending = true, true
		return nil
	case a.Seq > last.rec.Seq:
		return brk(last, fmt.Sprintf("log ends at seq %d, but the head anchor says seq %d: "+
			"the tail was cut off", last.rec.Seq, a.Seq))
	case a.Seq == last.rec.Seq:
		return brk(last, "record differs from the one the head anchor names: it was edited "+
			"or replaced")
	}
	if int(a.Seq) >= 1 && int(a.Seq) <= len(entries) &&
		LineHash(entries[a.Seq-1].raw) == a.Hash {
		return brk(entries[a.Seq], fmt.Sprintf("record comes after the anchored head (seq %d): "+
			"appended by something other than coffer, or the anchor is stale", a.Seq))
	}
	return brk(last, fmt.Sprintf("log does not contain the head the anchor names (seq %d)", a.Seq))
}

// Scan decodes each line of r in turn and calls fn with its 1-based number,
// its bytes (without the newline) and the record, or with the error that
// kept the line from being a record. It checks nothing else (Verify does)
// and stops at fn's first error.
func Scan(r io.Reader, fn func(line int, raw []byte, rec Record, err error) error) error {
	br := bufio.NewReaderSize(r, maxLine)
	for n := 1; ; n++ {
		raw, err := readLine(br)
		var be *BreakError
		switch {
		case errors.Is(err, io.EOF) && raw == nil:
			return nil
		case errors.As(err, &be):
			return fmt.Errorf("line %d: %s", n, be.Reason)
		case err != nil && !errors.Is(err, io.EOF):
			return err
		}
		var rec Record
		derr := decodeStrict(raw, &rec)
		if errors.Is(err, io.EOF) {
			derr = errors.New("incomplete last line")
		}
		if ferr := fn(n, raw, rec, derr); ferr != nil {
			return ferr
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}
