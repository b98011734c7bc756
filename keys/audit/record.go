package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cofferfs/coffer/keys"
)

// EventType names what happened. The set may grow; Verify accepts types it
// does not know.
type EventType string

// Event types written by coffer.
const (
	EventInit             EventType = "init"              // volume created
	EventMount            EventType = "mount"             // unlocked with Master and mounted
	EventUnmount          EventType = "unmount"           // mount ended
	EventUnlock           EventType = "unlock"            // a master key failed to unlock (unkeyed)
	EventIntegrity        EventType = "integrity"         // tampered or corrupt file, with Path
	EventIntegrityDropped EventType = "integrity-dropped" // failures not recorded one by one
	EventMasterAdded      EventType = "master-added"
	EventMasterRemoved    EventType = "master-removed"
	EventMasterReplaced   EventType = "master-replaced"
	EventRotationStarted  EventType = "rotation-started"
	EventRotationProgress EventType = "rotation-progress"
	EventRotationFinished EventType = "rotation-finished"
	EventKeyRetired       EventType = "key-retired"
	EventKeyPurged        EventType = "key-purged" // RingKey left the ring
	EventReencrypt        EventType = "reencrypt"
	EventRecoveryUsed     EventType = "recovery-used"
	EventBackupExported   EventType = "backup-exported"
	EventConfigRestored   EventType = "config-restored" // volume config put back from a backup
	EventAuditConfig      EventType = "audit-config"    // audit settings changed
	EventCheckpoint       EventType = "checkpoint"      // written by Close
)

// EventTypes lists every event type, in the order of the constants.
var EventTypes = []EventType{EventInit, EventMount, EventUnmount, EventUnlock, EventIntegrity,
	EventIntegrityDropped, EventMasterAdded, EventMasterRemoved, EventMasterReplaced,
	EventRotationStarted, EventRotationProgress, EventRotationFinished, EventKeyRetired,
	EventKeyPurged, EventReencrypt, EventRecoveryUsed, EventBackupExported, EventConfigRestored,
	EventAuditConfig, EventCheckpoint}

// Unkeyed reports whether records of type t may lack a MAC: they are
// written by commands that do not unlock the ring (a failed unlock, and
// commands that need no key: backup, restore, audit config).
func Unkeyed(t EventType) bool {
	switch t {
	case EventUnlock, EventBackupExported, EventConfigRestored, EventAuditConfig:
		return true
	}
	return false
}

// Outcomes of an event.
const (
	OutcomeOK     = "ok"
	OutcomeFailed = "failed"
)

// MACPurpose is the purpose string under which the MAC key is derived from
// a ring key.
const MACPurpose = "coffer-audit-mac-v1"

// Limits on free-text fields, so that one record stays one short line.
const (
	maxReason    = 1024
	maxPath      = 4096
	maxDetail    = 16
	maxDetailLen = 256
	maxLine      = 16 << 10
)

// Event is what a caller records. Record fills in the rest.
type Event struct {
	Type EventType
	// Err, if not nil, makes the outcome "failed" with Err's message as
	// the reason. It must not hold key material (coffer's errors never do).
	Err error
	// Master is the ID of the master key involved, if any.
	Master string
	// RingKey is the ID of the ring key involved, if any.
	RingKey uint32
	// Path is the file involved, relative to the mount root ("/a/b").
	Path string
	// Count is how many occurrences or items the record stands for.
	Count uint64
	// Detail holds further short facts, such as a master key's kind.
	Detail map[string]string
}

// Record is one line of the log. The JSON field order is fixed by this
// struct; mac_key and mac come last so that the MAC covers all the rest.
type Record struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"` // RFC 3339, nanoseconds, UTC
	Host    string            `json:"host"`
	UID     int               `json:"uid"`
	User    string            `json:"user,omitempty"`
	PID     int               `json:"pid"`
	Volume  keys.VolumeID     `json:"volume"`
	Event   EventType         `json:"event"`
	Outcome string            `json:"outcome"`
	Master  string            `json:"master,omitempty"`
	RingKey uint32            `json:"ring_key,omitempty"`
	Reason  string            `json:"reason,omitempty"`
	Path    string            `json:"path,omitempty"`
	Count   uint64            `json:"count,omitempty"`
	Detail  map[string]string `json:"detail,omitempty"`
	Prev    string            `json:"prev"`
	MACKey  uint32            `json:"mac_key,omitempty"`
	MAC     string            `json:"mac,omitempty"`
}

// Genesis returns the prev value of a log's first record for volume vol.
func Genesis(vol keys.VolumeID) string {
	h := sha256.New()
	h.Write([]byte("coffer-audit-v1\x00genesis\x00"))
	h.Write(vol[:])
	return hex.EncodeToString(h.Sum(nil))
}

// LineHash returns the hash that the next record's prev must hold: the hex
// SHA-256 of line, without its newline.
func LineHash(line []byte) string {
	sum := sha256.Sum256(bytes.TrimSuffix(line, []byte("\n")))
	return hex.EncodeToString(sum[:])
}

// newRecord fills the caller's part of a record from e, bounding the free
// text.
func newRecord(e Event) Record {
	r := Record{Event: e.Type, Outcome: OutcomeOK, Master: e.Master, RingKey: e.RingKey,
		Path: clip(e.Path, maxPath), Count: e.Count}
	if e.Err != nil {
		r.Outcome = OutcomeFailed
		r.Reason = clip(e.Err.Error(), maxReason)
	}
	if len(e.Detail) > 0 {
		r.Detail = make(map[string]string, len(e.Detail))
		for k, v := range e.Detail {
			if len(r.Detail) == maxDetail {
				break
			}
			r.Detail[clip(k, maxDetailLen)] = clip(v, maxDetailLen)
		}
	}
	return r
}

// clip shortens s to at most n bytes, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// encode returns the record's line without a newline, MACed with key
// (ring key keyID) when key is not nil.
func (r Record) encode(keyID uint32, key []byte) ([]byte, error) {
	r.MACKey, r.MAC = 0, ""
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("failed to encode audit record: %w", err)
	}
	if key == nil {
		return body, nil
	}
	return withMAC(body, keyID, computeMAC(key, body)), nil
}

// withMAC appends the mac_key and mac fields to the JSON object body.
func withMAC(body []byte, keyID uint32, mac []byte) []byte {
	out := bytes.TrimSuffix(body, []byte("}"))
	return fmt.Appendf(out, `,"mac_key":%d,"mac":"%s"}`, keyID, hex.EncodeToString(mac))
}

// computeMAC returns HMAC-SHA256 under key of "coffer-audit-v1\x00" || body.
func computeMAC(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("coffer-audit-v1\x00"))
	m.Write(body)
	return m.Sum(nil)
}

// macBody returns the part of line that the MAC of r covers: line without
// its mac_key and mac fields. ok is false when line does not end with
// exactly the fields encode writes.
func macBody(line []byte, r Record) (body []byte, ok bool) {
	suffix := fmt.Sprintf(`,"mac_key":%d,"mac":"%s"}`, r.MACKey, r.MAC)
	if !bytes.HasSuffix(line, []byte(suffix)) {
		return nil, false
	}
	body = bytes.Clone(line[:len(line)-len(suffix)])
	return append(body, '}'), true
}
