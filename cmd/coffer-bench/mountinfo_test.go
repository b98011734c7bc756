//go:build linux

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    mountEntry
		wantErr bool
	}{
		{
			name: "fuse with optional fields",
			line: `45 27 0:40 / /tmp/x/mnt rw,nosuid,nodev,relatime shared:5 master:1 - fuse.coffer /tmp/x/backing rw,user_id=0`,
			want: mountEntry{mountPoint: "/tmp/x/mnt", fsType: "fuse.coffer", source: "/tmp/x/backing",
				options: "rw,nosuid,nodev,relatime rw,user_id=0"},
		},
		{
			name: "escaped space and backslash",
			line: `50 27 0:41 / /tmp/a\040b/c\134d rw - tmpfs tmpfs rw`,
			want: mountEntry{mountPoint: `/tmp/a b/c\d`, fsType: "tmpfs", source: "tmpfs", options: "rw rw"},
		},
		{name: "no separator", line: `45 27 0:40 / /mnt rw tmpfs tmpfs rw`, wantErr: true},
		{name: "too short", line: `45 27`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountinfo(strings.NewReader(tt.line + "\n"))
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Len(t, got, 1)
			assert.Equal(t, tt.want, got[0])
		})
	}
}

func TestReadVmHWM(t *testing.T) {
	v, err := readVmHWM("/proc/self/status")
	require.NoError(t, err)
	assert.Greater(t, v, int64(1<<20), "a Go test binary uses more than 1 MiB")
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		{
			name: "plain name",
			stat: "1234 (coffer) S 1 1234 1234 0 -1 4194560 500 0 0 0 150 25 0 0 20 0 8 0 100 0 0",
			want: 1750 * time.Millisecond,
		},
		{
			name: "name with spaces and parentheses",
			stat: "99 (a (b) c) R 1 99 99 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 0 0",
			want: 100 * time.Millisecond,
		},
		{name: "truncated", stat: "99 (x) R 1 2", wantErr: true},
		{name: "no name", stat: "99 x R", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU(tt.stat)
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
