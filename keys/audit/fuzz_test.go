package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cofferfs/coffer/keys"
)

// fuzzLog is a valid keyed log with its ring and anchor, made once.
var fuzzLog struct {
	once   sync.Once
	log    []byte
	ring   *keys.Ring
	anchor *Anchor
	err    error
}

func validLog(t testing.TB) ([]byte, *keys.Ring, *Anchor) {
	fuzzLog.once.Do(func() {
		dir, err := os.MkdirTemp("", "coffer-audit-fuzz-")
		if err != nil {
			fuzzLog.err = err
			return
		}
		defer os.RemoveAll(dir)
		fuzzLog.err = makeLog(dir)
	})
	if fuzzLog.err != nil {
		t.Fatal(fuzzLog.err)
	}
	return fuzzLog.log, fuzzLog.ring, fuzzLog.anchor
}

func makeLog(dir string) error {
	if err := os.Mkdir(filepath.Join(dir, keys.DirName), 0o700); err != nil {
		return err
	}
	ring, err := keys.NewRing()
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "audit.jsonl")
	l, err := Open(path, keys.VolumeID{7}, Options{Backing: dir})
	if err != nil {
		return err
	}
	ctx := context.Background()
	_ = l.Record(ctx, Event{Type: EventUnlock, Master: "1a2b3c4d", Err: keys.ErrWrongKey})
	l.SetKeys(ring)
	_ = l.Record(ctx, Event{Type: EventMount, Master: "5e6f7a8b", RingKey: ring.Primary().ID})
	_ = l.Record(ctx, Event{Type: EventIntegrity, Path: "/a", Count: 2,
		Detail: map[string]string{"block": "header"}})
	if err := l.Close(); err != nil {
		return err
	}
	fuzzLog.log, err = os.ReadFile(path)
	if err != nil {
		return err
	}
	fuzzLog.ring = ring
	fuzzLog.anchor, err = ReadAnchor(dir)
	return err
}

// FuzzVerify feeds arbitrary bytes to Verify and Scan, which must not panic,
// and checks that no change of one byte of a valid log goes unnoticed when
// the ring and the anchor are at hand.
func FuzzVerify(f *testing.F) {
	log, _, _ := validLog(f)
	f.Add(log, uint(0), byte('x'))
	f.Add(log, uint(len(log)-1), byte(' '))
	f.Add([]byte("{}\n"), uint(1), byte('"'))
	f.Add([]byte(""), uint(0), byte(0))
	f.Fuzz(func(t *testing.T, data []byte, pos uint, b byte) {
		_, _ = Verify(bytes.NewReader(data), VerifyOptions{})
		_ = Scan(bytes.NewReader(data), func(int, []byte, Record, error) error { return nil })

		log, ring, anchor := validLog(t)
		i := int(pos % uint(len(log)))
		if log[i] == b {
			return
		}
		mutated := bytes.Clone(log)
		mutated[i] = b
		if _, err := Verify(bytes.NewReader(mutated),
			VerifyOptions{Keys: ring, Anchor: anchor}); err == nil {
			t.Fatalf("byte %d changed from %q to %q, and the log still verifies", i, log[i], b)
		}
	})
}
