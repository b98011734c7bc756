package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

// TestOpenVolumeConfiguredLog checks which configured logs OpenVolume uses:
// the one it was told was just chosen (created), then that same log as a
// started log; not an empty one, and not one under an excluded folder, for
// which NotUsed hears why and the default log takes the record.
func TestOpenVolumeConfiguredLog(t *testing.T) {
	t.Setenv(DirEnv, t.TempDir())
	v := newTestVolume(t)
	def, err := DefaultPath(v.vol)
	require.NoError(t, err)
	require.NoError(t, WriteSettings(v.backing, Settings{Log: v.log}))

	var why []error
	open := func(opts Options) *Log {
		t.Helper()
		opts.NotUsed = func(path string, err error) {
			assert.Equal(t, v.log, path)
			why = append(why, err)
		}
		l, err := OpenVolume(v.backing, v.vol, opts)
		require.NoError(t, err)
		require.NoError(t, l.Record(context.Background(), Event{Type: EventBackupExported}))
		require.NoError(t, l.Close())
		return l
	}

	// Not yet started: not used, and not created.
	assert.Equal(t, def, open(Options{}).Path())
	require.Len(t, why, 1)
	assert.ErrorIs(t, why[0], ErrLogNotUsed)
	assert.NoFileExists(t, v.log)

	// Chosen: created, with a first record of the volume; then used.
	assert.Equal(t, v.log, open(Options{Chosen: v.log}).Path())
	assert.Equal(t, v.log, open(Options{}).Path())
	require.Len(t, why, 1)

	// Under an excluded folder: not used.
	assert.Equal(t, def, open(Options{Exclude: []string{filepath.Dir(v.log)}}).Path())
	require.Len(t, why, 2)
	assert.ErrorContains(t, why[1], "it lies inside "+filepath.Dir(v.log))

	// Emptied (copytruncate): not used, left empty.
	require.NoError(t, os.Truncate(v.log, 0))
	assert.Equal(t, def, open(Options{}).Path())
	require.Len(t, why, 3)
	assert.ErrorContains(t, why[2], "it is empty")
	fi, err := os.Stat(v.log)
	require.NoError(t, err)
	assert.Zero(t, fi.Size())

	path, notUsed, err := Where(v.backing, v.vol, nil)
	require.NoError(t, err)
	assert.Equal(t, def, path)
	assert.ErrorIs(t, notUsed, ErrLogNotUsed)
}

// TestAnchorFailureWarnedOnce checks that a Log whose head anchor cannot
// be written (a full or read-only backing directory) still appends, and
// warns once, saying what later commands will report.
func TestAnchorFailureWarnedOnce(t *testing.T) {
	v := newTestVolume(t)
	require.NoError(t, os.RemoveAll(filepath.Join(v.backing, keys.DirName)))
	var buf bytes.Buffer
	l, err := Open(v.log, v.vol, Options{Backing: v.backing, Logger: zerolog.New(&buf)})
	require.NoError(t, err)
	for range 3 {
		require.NoError(t, l.Record(context.Background(), Event{Type: EventBackupExported}))
	}
	require.NoError(t, l.Close())
	assert.Equal(t, 1, strings.Count(buf.String(), "failed to update audit head anchor"), buf.String())
	assert.Contains(t, buf.String(), "later commands warn")
}

// TestNamedLog checks which record names the log a file was written to:
// the last init or audit-config record with a "log" detail, skipping other
// events and lines too long to be records.
func TestNamedLog(t *testing.T) {
	rec := func(event, log string) string {
		return `{"seq":1,"event":"` + event + `","detail":{"log":"` + log + `"},"prev":"x"}` + "\n"
	}
	tests := []struct {
		name, content, want string
	}{
		{name: "none names a log (older logs)", content: `{"seq":1,"event":"init","prev":"x"}` + "\n"},
		{name: "init", content: rec("init", "/var/log/a"), want: "/var/log/a"},
		{name: "last audit-config wins",
			content: rec("init", "/var/log/a") + rec("audit-config", "/srv/b") +
				rec("backup-exported", "/elsewhere"),
			want: "/srv/b"},
		{name: "over-long line skipped",
			content: rec("init", "/var/log/a") + strings.Repeat("x", maxLine+10) + "\n" +
				rec("audit-config", "/srv/b"),
			want: "/srv/b"},
		{name: "no final newline", content: strings.TrimSuffix(rec("init", "/var/log/a"), "\n"),
			want: "/var/log/a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, namedLog(strings.NewReader(tt.content)))
		})
	}
}
