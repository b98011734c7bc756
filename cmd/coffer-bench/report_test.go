//go:build linux

package main

import (
	"testing"

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
