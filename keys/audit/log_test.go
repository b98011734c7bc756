package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

// testVolume is a backing directory with a .coffer folder, a volume ID and
// a ring, as a volume has after init.
type testVolume struct {
	backing string
	vol     keys.VolumeID
	ring    *keys.Ring
	log     string
}

func newTestVolume(t *testing.T) *testVolume {
	t.Helper()
	backing := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(backing, keys.DirName), 0o700))
	vol, err := keys.NewVolumeID()
	require.NoError(t, err)
	ring, err := keys.NewRing()
	require.NoError(t, err)
	return &testVolume{backing: backing, vol: vol, ring: ring,
		log: filepath.Join(t.TempDir(), "audit.jsonl")}
}

func (v *testVolume) open(t *testing.T, keyed bool) *Log {
	t.Helper()
	opts := Options{Backing: v.backing}
	if keyed {
		opts.Keys = v.ring
	}
	l, err := Open(v.log, v.vol, opts)
	require.NoError(t, err)
	return l
}

// write appends the events with a keyed log and closes it.
func (v *testVolume) write(t *testing.T, events ...Event) {
	t.Helper()
	l := v.open(t, true)
	for _, e := range events {
		require.NoError(t, l.Record(context.Background(), e))
	}
	require.NoError(t, l.Close())
}

func (v *testVolume) lines(t *testing.T) [][]byte {
	t.Helper()
	b, err := os.ReadFile(v.log)
	require.NoError(t, err)
	require.True(t, bytes.HasSuffix(b, []byte("\n")))
	lines := bytes.SplitAfter(b, []byte("\n"))
	return lines[:len(lines)-1]
}

func (v *testVolume) setLines(t *testing.T, lines [][]byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(v.log, bytes.Join(lines, nil), 0o600))
}

func (v *testVolume) verify(t *testing.T, keyed bool) (*Report, error) {
	t.Helper()
	f, err := os.Open(v.log)
	require.NoError(t, err)
	defer f.Close()
	a, err := ReadAnchor(v.backing)
	require.NoError(t, err)
	opts := VerifyOptions{Anchor: a, Volume: v.vol}
	if keyed {
		opts.Keys = v.ring
	}
	return Verify(f, opts)
}

func decode(t *testing.T, line []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, jsonUnmarshal(line, &m))
	return m
}

func TestRecordFields(t *testing.T) {
	v := newTestVolume(t)
	before := time.Now().UTC()
	l := v.open(t, false)
	require.NoError(t, l.Record(context.Background(), Event{Type: EventUnlock,
		Master: "1a2b3c4d", Err: errors.New("wrong master key")}))
	l.SetKeys(v.ring)
	primary := v.ring.Primary().ID
	require.NoError(t, l.Record(context.Background(), Event{Type: EventMount,
		Master: "5e6f7a8b", RingKey: primary, Detail: map[string]string{"kind": "file"}}))
	require.NoError(t, l.Close())
	after := time.Now().UTC()

	lines := v.lines(t)
	require.Len(t, lines, 3, "unlock, mount, closing checkpoint")
	host, _ := os.Hostname()

	first := decode(t, lines[0])
	assert.EqualValues(t, 1, first["seq"])
	assert.Equal(t, host, first["host"])
	assert.EqualValues(t, os.Getuid(), first["uid"])
	assert.EqualValues(t, os.Getpid(), first["pid"])
	assert.Equal(t, v.vol.String(), first["volume"])
	assert.Equal(t, "unlock", first["event"])
	assert.Equal(t, "failed", first["outcome"])
	assert.Equal(t, "wrong master key", first["reason"])
	assert.Equal(t, "1a2b3c4d", first["master"])
	assert.NotContains(t, first, "mac", "written before SetKeys")
	assert.Equal(t, Genesis(v.vol), first["prev"])
	ts, err := time.Parse(time.RFC3339Nano, first["time"].(string))
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(first["time"].(string), "Z"), "time is UTC")
	assert.False(t, ts.Before(before.Truncate(time.Microsecond)) || ts.After(after))

	second := decode(t, lines[1])
	assert.EqualValues(t, 2, second["seq"])
	assert.Equal(t, "mount", second["event"])
	assert.Equal(t, "ok", second["outcome"])
	assert.NotContains(t, second, "reason")
	assert.EqualValues(t, primary, second["ring_key"])
	assert.EqualValues(t, primary, second["mac_key"])
	assert.Equal(t, map[string]any{"kind": "file"}, second["detail"])
	assert.Equal(t, LineHash(lines[0]), second["prev"])

	third := decode(t, lines[2])
	assert.Equal(t, "checkpoint", third["event"])
	assert.EqualValues(t, 2, third["count"], "records this Log wrote")

	rep, err := v.verify(t, true)
	require.NoError(t, err)
	assert.Equal(t, 3, rep.Records)
	assert.Equal(t, 2, rep.MACChecked)
	assert.Equal(t, 1, rep.Unkeyed)
	assert.True(t, rep.Anchored)
	rep, err = v.verify(t, false)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.MACUnchecked)
}

// TestLineHashIndependent checks the chain hash against sha256sum's
// definition: SHA-256 of the line's bytes without the newline.
func TestLineHashIndependent(t *testing.T) {
	// printf '%s' '{"a":1}' | sha256sum
	assert.Equal(t, "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862",
		LineHash([]byte("{\"a\":1}\n")))
	// (printf 'coffer-audit-v1\0genesis\0'; head -c 16 /dev/zero) | sha256sum
	assert.Equal(t, "bf072115f22ae2fd815dbf6666cf5453b640ce2e42baf31a950efbeae77593f0",
		Genesis(keys.VolumeID{}))
}

func sampleEvents() []Event {
	return []Event{
		{Type: EventInit, Master: "1a2b3c4d", RingKey: 7},
		{Type: EventMount, Master: "1a2b3c4d"},
		{Type: EventMasterAdded, Master: "5e6f7a8b", Detail: map[string]string{"kind": "file"}},
		{Type: EventUnmount},
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name   string
		keyed  bool // verify with the ring
		change func(t *testing.T, v *testVolume, lines [][]byte) [][]byte
		line   int    // the line verify must name
		reason string // part of the reason
	}{
		{name: "edited field, keyless", change: editLine(1), line: 3, reason: "line 2 was edited"},
		{name: "edited field, keyed", keyed: true, change: editLine(1), line: 2,
			reason: "MAC does not match"},
		{name: "edited last record", change: editLine(4), line: 5, reason: "head anchor"},
		{name: "deleted line", change: func(_ *testing.T, _ *testVolume, l [][]byte) [][]byte {
			return append(l[:2:2], l[3:]...)
		}, line: 3, reason: "seq 4 where 3 was due"},
		{name: "deleted first line", change: func(_ *testing.T, _ *testVolume, l [][]byte) [][]byte {
			return l[1:]
		}, line: 1, reason: "seq 2 where 1 was due"},
		{name: "reordered lines", change: func(_ *testing.T, _ *testVolume, l [][]byte) [][]byte {
			l[1], l[2] = l[2], l[1]
			return l
		}, line: 2, reason: "seq 3 where 2 was due"},
		{name: "truncated tail", change: func(_ *testing.T, _ *testVolume, l [][]byte) [][]byte {
			return l[:3]
		}, line: 3, reason: "the tail was cut off"},
		{name: "torn tail", change: func(_ *testing.T, _ *testVolume, l [][]byte) [][]byte {
			l[4] = l[4][:len(l[4])/2]
			return l
		}, line: 5, reason: "no newline"},
		{name: "appended line, chain ignored", change: appendForged(false, false), line: 6,
			reason: "prev is not the hash of line 5"},
		{name: "appended line, chain kept, keyed event", keyed: true,
			change: appendForged(true, false), line: 6, reason: "has no MAC"},
		{name: "appended line, chain kept, anchor", change: appendForged(true, true), line: 6,
			reason: "after the anchored head"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVolume(t)
			v.write(t, sampleEvents()...)
			_, err := v.verify(t, tt.keyed)
			require.NoError(t, err, "untouched log")

			v.setLines(t, tt.change(t, v, v.lines(t)))
			_, err = v.verify(t, tt.keyed)
			var be *BreakError
			require.ErrorAs(t, err, &be)
			assert.Equal(t, tt.line, be.Line, "%v", err)
			assert.Contains(t, be.Reason, tt.reason)
		})
	}
}

// editLine changes the master field of line i (0-based), keeping it valid
// JSON.
func editLine(i int) func(*testing.T, *testVolume, [][]byte) [][]byte {
	return func(t *testing.T, _ *testVolume, l [][]byte) [][]byte {
		t.Helper()
		edited := bytes.Replace(l[i], []byte(`"event":"`), []byte(`"master":"99999999","event":"`), 1)
		if !bytes.Contains(l[i], []byte(`"master"`)) {
			l[i] = edited
			return l
		}
		l[i] = bytes.Replace(l[i], []byte(`"master":"1a2b3c4d"`), []byte(`"master":"99999999"`), 1)
		require.NotEqual(t, edited, l[i])
		return l
	}
}

// appendForged appends a master-added record; linked gives it the right
// seq and prev (anyone can compute them); unkeyed makes it an unkeyed
// event, which only the anchor can catch without a MAC.
func appendForged(linked, unkeyed bool) func(*testing.T, *testVolume, [][]byte) [][]byte {
	return func(t *testing.T, v *testVolume, l [][]byte) [][]byte {
		t.Helper()
		r := Record{Seq: uint64(len(l) + 1), Time: time.Now().UTC(), Host: "h", PID: 1,
			Volume: v.vol, Event: EventMasterAdded, Outcome: OutcomeOK, Master: "66666666",
			Prev: strings.Repeat("0", 64)}
		if unkeyed {
			r.Event = EventUnlock
		}
		if linked {
			r.Prev = LineHash(l[len(l)-1])
		}
		line, err := r.encode(0, nil)
		require.NoError(t, err)
		return append(l, append(line, '\n'))
	}
}

// hidingRing is a ring from which some keys were purged.
type hidingRing struct {
	*keys.Ring
	gone uint32
}

func (h hidingRing) DeriveKey(id uint32, purpose string) ([]byte, error) {
	if id == h.gone {
		return nil, fmt.Errorf("gone: %w", keys.ErrUnknownKey)
	}
	return h.Ring.DeriveKey(id, purpose)
}

func TestVerifyPurgedKey(t *testing.T) {
	v := newTestVolume(t)
	old := v.ring.Primary().ID
	v.write(t, Event{Type: EventInit})
	added, err := v.ring.AddKey()
	require.NoError(t, err)
	require.NoError(t, v.ring.SetPrimary(added.ID))

	f := func() error {
		f, err := os.Open(v.log)
		require.NoError(t, err)
		defer f.Close()
		_, err = Verify(f, VerifyOptions{Keys: hidingRing{v.ring, old}})
		return err
	}
	var be *BreakError
	require.ErrorAs(t, f(), &be, "a MAC key the ring lacks needs a logged purge")
	assert.Equal(t, 1, be.Line)
	assert.Contains(t, be.Reason, "no later valid key-purged record")

	v.write(t, Event{Type: EventKeyPurged, RingKey: old})
	require.NoError(t, f())

	// A record after the purge that names the purged key is forged: no
	// writer uses a key after its purge.
	lines := v.lines(t)
	r := Record{Seq: uint64(len(lines) + 1), Time: time.Now().UTC(), Host: "h", PID: 1,
		Volume: v.vol, Event: EventMasterAdded, Outcome: OutcomeOK,
		Prev: LineHash(lines[len(lines)-1]), MACKey: old, MAC: strings.Repeat("ab", 32)}
	forged, err := json.Marshal(r)
	require.NoError(t, err)
	v.setLines(t, append(lines, append(forged, '\n')))
	require.ErrorAs(t, f(), &be)
	assert.Equal(t, len(lines)+1, be.Line)
	assert.Contains(t, be.Reason, "no later valid key-purged record")
}

// TestVerifyPurgeAfterPurge rotates twice: the first purge record is MACed
// with the key that the second rotation purges, and the log must still
// verify with the ring that remains.
func TestVerifyPurgeAfterPurge(t *testing.T) {
	v := newTestVolume(t)
	a := v.ring.Primary().ID
	v.write(t, Event{Type: EventInit})
	b := rotate(t, v.ring)
	v.write(t, Event{Type: EventKeyPurged, RingKey: a})
	c := rotate(t, v.ring)
	v.write(t, Event{Type: EventKeyPurged, RingKey: b})
	_ = c

	gone := goneKeys{v.ring, map[uint32]bool{a: true, b: true}}
	f, err := os.Open(v.log)
	require.NoError(t, err)
	defer f.Close()
	rep, err := Verify(f, VerifyOptions{Keys: gone})
	require.NoError(t, err)
	assert.Equal(t, 4, rep.MACPurged, "init, checkpoint, purge of a, checkpoint")
	assert.Equal(t, 2, rep.MACChecked)
}

// rotate adds a key to r and makes it the primary.
func rotate(t *testing.T, r *keys.Ring) uint32 {
	t.Helper()
	k, err := r.AddKey()
	require.NoError(t, err)
	require.NoError(t, r.SetPrimary(k.ID))
	return k.ID
}

// goneKeys is a ring from which the keys in gone were purged.
type goneKeys struct {
	*keys.Ring
	gone map[uint32]bool
}

func (g goneKeys) DeriveKey(id uint32, purpose string) ([]byte, error) {
	if g.gone[id] {
		return nil, fmt.Errorf("gone: %w", keys.ErrUnknownKey)
	}
	return g.Ring.DeriveKey(id, purpose)
}

func TestTornTailIsClosedAndLinked(t *testing.T) {
	v := newTestVolume(t)
	v.write(t, Event{Type: EventInit})
	lines := v.lines(t)
	torn := lines[1][:20]
	v.setLines(t, [][]byte{lines[0], torn})

	v.write(t, Event{Type: EventMount})
	after := v.lines(t)
	require.Len(t, after, 4)
	assert.Equal(t, append(bytes.Clone(torn), '\n'), after[1], "the fragment stays a line")
	m := decode(t, after[2])
	assert.EqualValues(t, 3, m["seq"])
	assert.Equal(t, LineHash(torn), m["prev"])

	_, err := v.verify(t, true)
	var be *BreakError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, 2, be.Line, "verify names the torn record")
}

func TestOpenRefusesOtherVolume(t *testing.T) {
	v := newTestVolume(t)
	v.write(t, Event{Type: EventInit})
	other, err := keys.NewVolumeID()
	require.NoError(t, err)
	l, err := Open(v.log, other, Options{})
	require.NoError(t, err)
	defer l.Close()
	err = l.Record(context.Background(), Event{Type: EventMount})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "belongs to volume "+v.vol.String())
}

func TestIntegrityRecorderLimits(t *testing.T) {
	v := newTestVolume(t)
	l := v.open(t, true)
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l.opts.now = func() time.Time { return clock }
	r := l.IntegrityRecorder(time.Minute)

	bad := errors.New("block failed authentication")
	for range 5 {
		r.Report("/a", 3, bad)
	}
	r.Report("/b", -1, bad)
	clock = clock.Add(time.Minute)
	r.Report("/a", 4, bad) // a new window: the record counts the 4 dropped
	r.Report("/a", 4, bad)
	require.NoError(t, r.Flush(context.Background()))
	require.NoError(t, l.Close())

	var got []string
	for _, line := range v.lines(t) {
		m := decode(t, line)
		row := fmt.Sprintf("%s %v %v %v", m["event"], m["path"], m["count"], m["detail"])
		if m["event"] == "integrity-dropped" {
			row += " " + m["outcome"].(string)
		}
		got = append(got, row)
	}
	assert.Equal(t, []string{
		"integrity /a 1 map[block:3]",
		"integrity /b 1 map[block:header]",
		"integrity /a 5 map[block:4]",
		"integrity-dropped /a 1 <nil> failed",
		"checkpoint <nil> 4 <nil>",
	}, got)
	_, err := v.verify(t, true)
	require.NoError(t, err)
}
