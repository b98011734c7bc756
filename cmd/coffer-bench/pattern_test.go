//go:build linux

package main

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPatternRoundTrip(t *testing.T) {
	p := newPattern([32]byte{1}, 7)
	buf := make([]byte, 3*patternBlock)
	p.fill(buf, 300)

	tests := []struct {
		name    string
		mutate  func(b []byte) []byte
		first   uint64
		wantErr bool
	}{
		{name: "intact", mutate: func(b []byte) []byte { return b }, first: 300},
		{name: "flipped payload bit", mutate: func(b []byte) []byte { b[patternBlock+100] ^= 1; return b }, first: 300, wantErr: true},
		{name: "flipped stamp bit", mutate: func(b []byte) []byte { b[2*patternBlock] ^= 0x80; return b }, first: 300, wantErr: true},
		{name: "read from another offset", mutate: func(b []byte) []byte { return b }, first: 301, wantErr: true},
		{name: "one pool period away", mutate: func(b []byte) []byte { return b }, first: 300 + poolBlocks, wantErr: true},
		{name: "partial block", mutate: func(b []byte) []byte { return b[:patternBlock+1] }, first: 300, wantErr: true},
		{name: "zeroed block", mutate: func(b []byte) []byte { clear(b[:patternBlock]); return b }, first: 300, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mutate(append([]byte(nil), buf...))
			err := p.check(b, tt.first)
			if !tt.wantErr {
				assert.NoError(t, err)
				return
			}
			var wrong *wrongDataError
			assert.True(t, errors.As(err, &wrong), "error %v is not a wrongDataError", err)
		})
	}
}

func TestPatternOtherFile(t *testing.T) {
	a := newPattern([32]byte{1}, 7)
	b := newPattern([32]byte{1}, 8)
	buf := make([]byte, patternBlock)
	a.fill(buf, 5)
	require.NoError(t, a.check(buf, 5))
	assert.Error(t, b.check(buf, 5), "a block of another file must not pass")
}
