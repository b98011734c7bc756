package keys

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// TagPurpose is the Ring.DeriveKey purpose of the key that tags master
// entries (see EntryTag).
const TagPurpose = "coffer-master-entry-tag-v1"

// tagSize is the size of EntryTag.MAC: a full HMAC-SHA256.
const tagSize = sha256.Size

// ErrUntrustedMaster reports a master entry that a command would seal the
// ring to without opening it (a recovery key's public half), but whose tag
// is missing or does not verify: nothing shows that a holder of the ring
// wrote it, and sealing the ring to it could hand the ring to whoever
// edited volume.json. The error is an *EntryError naming the entry.
var ErrUntrustedMaster = errors.New("master key entry is not authenticated")

// EntryTag authenticates a master entry: an HMAC-SHA256, under the key
// derived from ring key Key with TagPurpose, of the entry's canonical
// encoding (entryMessage). Only a holder of the ring can make one, so a
// tagged entry was written by someone who could already open the volume.
//
// Every entry that Init, AddMaster, ReplaceMaster or CommitRing writes or
// seals to carries one, under the primary key; it is checked where the
// ring is sealed to an entry that was not opened first (Opened.SealOnly)
// or whose copy held an older ring (Opened.RolledForward). Opening a master
// key and unsealing a copy of the current ring proves the entry is one a
// holder of that ring sealed to; an older copy proves only that its maker
// held an older ring.
type EntryTag struct {
	Key uint32 `json:"key"` // the ring key the MAC key is derived from
	MAC []byte `json:"mac"` // 32 bytes, base64 in JSON
}

// EntryError reports a master entry refused by the tag check. It matches
// ErrUntrustedMaster.
type EntryError struct {
	Master MasterEntry
	// Missing is true when the entry has no tag at all (written by a
	// coffer older than tags, or not by coffer).
	Missing bool
	// Changed is true when the sealed ring lists the entry's ID with
	// another digest: its kind, URI or params are not those the last
	// rotation commit sealed the ring to (Ring.CheckEntry). No tag is
	// asked for then: whoever holds the ring can make one.
	Changed bool
	// Err says why a tag did not verify; nil when Missing or Changed.
	Err error
}

// Error names the entry and what is wrong with its tag.
func (e *EntryError) Error() string {
	if e.Changed {
		return fmt.Sprintf("master key %s (%s) is not the entry the last rotation sealed the "+
			"ring to (its kind, URI or params changed since): %v", e.Master.ID, e.Master.Kind,
			ErrUntrustedMaster)
	}
	if e.Missing {
		return fmt.Sprintf("master key %s (%s) has no tag in volume.json: %v", e.Master.ID,
			e.Master.Kind, ErrUntrustedMaster)
	}
	return fmt.Sprintf("master key %s (%s) has a tag that does not verify (%v): %v",
		e.Master.ID, e.Master.Kind, e.Err, ErrUntrustedMaster)
}

// Unwrap returns ErrUntrustedMaster and the cause.
func (e *EntryError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrUntrustedMaster}
	}
	return []error{ErrUntrustedMaster, e.Err}
}

// TagEntry returns the tag of master entry m of volume vol under r's
// primary key.
func (r *Ring) TagEntry(vol VolumeID, m MasterEntry) (*EntryTag, error) {
	id := r.Primary().ID
	mac, err := r.entryMAC(id, vol, m)
	if err != nil {
		return nil, fmt.Errorf("failed to tag master key %s: %w", m.ID, err)
	}
	return &EntryTag{Key: id, MAC: mac}, nil
}

// VerifyEntry checks the tag of master entry m of volume vol with r. It
// returns an *EntryError (matching ErrUntrustedMaster) when m has no tag,
// when its tag is under a ring key other than r's primary key or the
// primary of the sealed copy r was read from, or when the MAC does not
// match: the entry, or the tag, was not written by a holder of this ring
// for this volume, master ID, kind, URI and params.
//
// A tag under an older key (active, retired) is refused even though the
// ring still holds that key: every commit tags again, under its primary,
// each entry it seals to, so a legitimate entry never needs one. Whoever
// holds an old key (a revoked master key's holder with an old copy of
// volume.json) can make such a tag, and accepting it would seal the next
// ring to an entry of their choosing.
func (r *Ring) VerifyEntry(vol VolumeID, m MasterEntry) error {
	if m.Tag == nil {
		return &EntryError{Master: m, Missing: true}
	}
	st := r.state.Load()
	if !r.Has(m.Tag.Key) {
		return &EntryError{Master: m,
			Err: fmt.Errorf("ring key %d is not in the ring", m.Tag.Key)}
	}
	if m.Tag.Key != r.Primary().ID && m.Tag.Key != st.base {
		return &EntryError{Master: m, Err: fmt.Errorf("ring key %d is not the primary key",
			m.Tag.Key)}
	}
	want, err := r.entryMAC(m.Tag.Key, vol, m)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, m.Tag.MAC) {
		return &EntryError{Master: m, Err: errors.New("MAC mismatch")}
	}
	return nil
}

// CheckEntry checks master entry m of volume vol, to which the ring is
// about to be sealed without m having been opened at r's generation (a
// master key that only seals, one whose copy rolled forward, a skipped one
// whose tag a commit renews). When the payload r was read from lists m's
// ID (every rotation commit lists the entries of the config it writes),
// m must be that entry: same digest of its canonical encoding, else an
// *EntryError with Changed. A tag cannot show this, since a holder of the
// ring that a master key removal has not yet rotated away can make one.
// An entry the payload does not list (added since the last rotation
// commit, or a payload older than the listing) needs a tag that verifies
// (VerifyEntry).
func (r *Ring) CheckEntry(vol VolumeID, m MasterEntry) error {
	want, listed := r.state.Load().entries[m.ID]
	if !listed {
		return r.VerifyEntry(vol, m)
	}
	got, err := entryDigest(vol, m)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return &EntryError{Master: m, Changed: true}
	}
	return nil
}

// Listed reports whether the sealed ring lists master ID id (see
// CheckEntry).
func (r *Ring) Listed(id string) bool {
	_, ok := r.state.Load().entries[id]
	return ok
}

// entryDigest returns the SHA-256 of m's canonical encoding (entryMessage),
// the digest a ring payload lists for m.
func entryDigest(vol VolumeID, m MasterEntry) ([sha256.Size]byte, error) {
	msg, err := entryMessage(vol, m)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(msg), nil
}

// withEntries returns a copy of r, of the same generation, whose payload
// lists entries.
func (r *Ring) withEntries(entries map[string][sha256.Size]byte) *Ring {
	st := *r.state.Load()
	st.entries = entries
	n := &Ring{names: r.names}
	n.state.Store(&st)
	return n
}

// setEntries makes entries r's listing, when r is still at generation gen.
func (r *Ring) setEntries(gen uint64, entries map[string][sha256.Size]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := *r.state.Load()
	if st.generation != gen {
		return
	}
	st.entries = entries
	r.state.Store(&st)
}

// entryMAC returns the HMAC-SHA256 of m's canonical encoding under the tag
// key derived from ring key id.
func (r *Ring) entryMAC(id uint32, vol VolumeID, m MasterEntry) ([]byte, error) {
	key, err := r.DeriveKey(id, TagPurpose)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	msg, err := entryMessage(vol, m)
	if err != nil {
		return nil, err
	}
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil), nil
}

// entryMessage returns the bytes an entry's tag covers:
//
//	"coffer-master-entry-tag-v1" 0x00
//	volume ID                    16 bytes
//	master ID, kind, URI, params each as uint32 big-endian length || bytes
//
// params is the entry's params JSON compacted and HTML-escaped, the form
// encoding/json writes, so that the tag survives a write and read of the
// config (which re-indents it); absent params are empty. The added time is
// not covered: it does not change what the ring is sealed to.
func entryMessage(vol VolumeID, m MasterEntry) ([]byte, error) {
	params, err := canonicalParams(m.Params)
	if err != nil {
		return nil, fmt.Errorf("%w: master key %s has invalid params: %v", ErrMalformed, m.ID, err)
	}
	b := append([]byte(TagPurpose), 0)
	b = append(b, vol[:]...)
	for _, f := range [][]byte{[]byte(m.ID), []byte(m.Kind), []byte(m.URI), params} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b, nil
}

// canonicalParams returns raw compacted and HTML-escaped.
func canonicalParams(raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var c bytes.Buffer
	if err := json.Compact(&c, raw); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	json.HTMLEscape(&out, c.Bytes())
	return out.Bytes(), nil
}

// sameEntry reports whether a and b record the same master key: ID, kind,
// URI and params (compared in canonical form).
func sameEntry(a, b MasterEntry) bool {
	if a.ID != b.ID || a.Kind != b.Kind || a.URI != b.URI {
		return false
	}
	pa, errA := canonicalParams(a.Params)
	pb, errB := canonicalParams(b.Params)
	return errA == nil && errB == nil && bytes.Equal(pa, pb)
}
