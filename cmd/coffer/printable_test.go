package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestPrintable(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, in, want string }{
		{"plain", "file:///etc/coffer/app.key", "file:///etc/coffer/app.key"},
		{"unicode", "Grüße/日本", "Grüße/日本"},
		{"escape sequence", "evil\x1b[31mRED\x1b[0m", `evil\x1b[31mRED\x1b[0m`},
		{"newline", "host\nFAKE LINE", `host\nFAKE LINE`},
		{"tab", "a\tb", `a\tb`},
		{"window title", "\x1b]0;T\x07", `\x1b]0;T\a`},
		{"C1 control", "a\u009bb", `a\u009bb`},
		{"bidi override", "txt\u202egpj.exe", `txt\u202egpj.exe`},
		{"invalid UTF-8", "a\xffb", `a\xffb`},
		{"real replacement character", "a\uFFFDb", "a\uFFFDb"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, printable(tt.in))
		})
	}
}
