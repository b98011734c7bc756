package audit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// DefaultIntegrityWindow is how long an integrity failure of one file
// silences further records for that file.
const DefaultIntegrityWindow = 5 * time.Minute

// IntegrityRecorder turns the integrity failures of a mount into records,
// at most one per file per window: a scan of a damaged file makes one
// record, not thousands. Failures inside the window are counted; the next
// record of that file carries the count, and Flush writes the counts still
// unrecorded. It is safe for concurrent use.
type IntegrityRecorder struct {
	log    *Log
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	files map[string]*fileFailures
}

type fileFailures struct {
	recorded time.Time // when the last record for the file was written
	dropped  uint64    // failures since then without a record
}

// IntegrityRecorder returns a recorder writing to l; window 0 means
// DefaultIntegrityWindow.
func (l *Log) IntegrityRecorder(window time.Duration) *IntegrityRecorder {
	if window <= 0 {
		window = DefaultIntegrityWindow
	}
	return &IntegrityRecorder{log: l, window: window, now: l.opts.now,
		files: map[string]*fileFailures{}}
}

// Report notes a failed integrity check of block (-1 for the header) of
// the file at path (relative to the mount root), caused by err.
func (r *IntegrityRecorder) Report(path string, block int64, err error) {
	count, ok := r.admit(path)
	if !ok {
		return
	}
	where := "header"
	if block >= 0 {
		where = strconv.FormatInt(block, 10)
	}
	e := Event{Type: EventIntegrity, Err: err, Path: path, Count: count,
		Detail: map[string]string{"block": where}}
	if werr := r.log.Record(context.Background(), e); werr != nil {
		r.log.opts.Logger.Error().Err(werr).Str("path", path).
			Msg("failed to write integrity failure to the audit log")
	}
}

// admit decides whether a failure of path gets a record now, and how many
// failures that record stands for.
func (r *IntegrityRecorder) admit(path string) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	f := r.files[path]
	if f != nil && now.Sub(f.recorded) < r.window {
		f.dropped++
		return 0, false
	}
	count := uint64(1)
	if f != nil {
		count += f.dropped
	}
	r.files[path] = &fileFailures{recorded: now}
	return count, true
}

// Flush writes one integrity-dropped record per file with failures that no
// record counted yet, and forgets every file.
func (r *IntegrityRecorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	files := r.files
	r.files = map[string]*fileFailures{}
	r.mu.Unlock()

	for path, f := range files {
		if f.dropped == 0 {
			continue
		}
		e := Event{Type: EventIntegrityDropped, Path: path, Count: f.dropped,
			Err: fmt.Errorf("%d more failed integrity checks since the last record", f.dropped)}
		if err := r.log.Record(ctx, e); err != nil {
			return err
		}
	}
	return nil
}
