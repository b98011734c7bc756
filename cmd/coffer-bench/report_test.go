//go:build linux

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestSpliceSection(t *testing.T) {
	block := func(s string) string { return beginMarker + "\n" + s + endMarker + "\n" }
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{name: "new file", doc: "", want: block("new\n")},
		{name: "no markers", doc: "# Title\nintro\n", want: "# Title\nintro\n\n" + block("new\n")},
		{
			name: "replace between markers",
			doc:  "# Title\n" + block("old\nold\n") + "\n## Analysis\nkept\n",
			want: "# Title\n" + block("new\n") + "\n## Analysis\nkept\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, spliceSection(tt.doc, "new\n"))
		})
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{name: "one", in: []float64{3}, want: 3},
		{name: "odd", in: []float64{9, 1, 5}, want: 5},
		{name: "even", in: []float64{4, 1, 3, 2}, want: 2.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.in...)
			assert.InDelta(t, tt.want, median(in), 1e-9)
			assert.Equal(t, tt.in, in, "median must not reorder its input")
		})
	}
}

func TestSpeedRatio(t *testing.T) {
	all := phases()
	assert.InDelta(t, 2.0, speedRatio(all[phaseWrite], 200, 100), 1e-9, "twice the MB/s is twice as fast")
	assert.InDelta(t, 2.0, speedRatio(all[phaseUntar], 5, 10), 1e-9, "half the seconds is twice as fast")
}

func TestCheckPhaseOrder(t *testing.T) {
	tests := []struct {
		name    string
		phases  []string
		wantErr bool
	}{
		{name: "all", phases: allPhases},
		{name: "write only", phases: []string{phaseWrite}},
		{name: "read without write", phases: []string{phaseRead}, wantErr: true},
		{name: "ls before untar", phases: []string{phaseLs, phaseUntar}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPhaseOrder(tt.phases)
			if tt.wantErr {
				assert.Error(t, err)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}

func TestWriteRotation(t *testing.T) {
	opts := &options{backings: []string{backingTmpfs, backingDisk}}
	rot := map[string]rotateSample{
		// 100 000 files in 8 s is 12 500 files/s; in 25 s, 4 000 files/s.
		backingTmpfs: {files: 100_000, rotate: 8 * time.Second, reencrypt: 40 * time.Second,
			rotateRate: 12_500, reencRate: 2_500},
		backingDisk: {files: 100_000, rotate: 25 * time.Second, reencrypt: 100 * time.Second,
			rotateRate: 4_000, reencRate: 1_000},
	}
	var b strings.Builder
	writeRotation(&b, opts, rot)
	out := b.String()
	assert.Contains(t, out, "| tmpfs | 100000 | 8.00 | 12500 | 40.0 | 2500 | 5.0× |\n")
	assert.Contains(t, out, "| disk | 100000 | 25.0 | 4000 | 100 | 1000 | 4.0× |\n")
	assert.Contains(t, out, "- holds: rotate on tmpfs: 12500 files/s, 100 000 files in 8.0 s (target < 20 s)\n")
	assert.Contains(t, out, "- misses: rotate on disk: 4000 files/s, 100 000 files in 25.0 s (target < 20 s)\n")

	b.Reset()
	writeRotation(&b, opts, map[string]rotateSample{backingTmpfs: {files: 300, rotate: time.Second,
		reencrypt: time.Second, rotateRate: 300, reencRate: 300}})
	assert.Contains(t, b.String(), "- not checked: rotate on tmpfs: 300 files/s over 300 files")

	b.Reset()
	writeRotation(&b, opts, nil)
	assert.Empty(t, b.String(), "no section without measurements")
}
