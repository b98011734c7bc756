//go:build linux

package main

import (
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestShellQuoteBash checks shellQuote against bash itself: each word
// must read back as the string (breaker3 F9: a newline in a path was
// printed as a space, so the hint's command named another directory).
func TestShellQuoteBash(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	require.NoError(t, err)
	for _, tt := range []struct{ name, in, want string }{
		{"safe", "/srv/app.enc", "/srv/app.enc"},
		{"space", "/tmp/sp ace", "'/tmp/sp ace'"},
		{"quote", "it's", `'it'\''s'`},
		{"newline", "/tmp/sp ace\nnl/back", `$'/tmp/sp ace\nnl/back'`},
		{"escape and quote", "a\x1b[31m'b\\c", `$'a\x1b[31m\'b\\c'`},
		{"tab", "a\tb", `$'a\tb'`},
		{"bidi override", "a\u202eb", `$'a\xe2\x80\xaeb'`},
		{"invalid UTF-8", "a\xffb", `$'a\xffb'`},
		{"unicode", "Grüße", "'Grüße'"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := shellQuote(tt.in)
			assert.Equal(t, tt.want, q)
			out, err := exec.Command(bash, "-c", "printf %s "+q).Output()
			require.NoError(t, err)
			assert.Equal(t, tt.in, string(out))
		})
	}
}
