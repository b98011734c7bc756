package main

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// printable returns s with every control character (C0, DEL, C1), Unicode
// format character (bidirectional overrides, zero-width characters) and
// byte that is not UTF-8 written as a Go escape (\n, \x1b, \u202e), and s
// itself when it has none. Human output passes strings read from files
// that whoever can write the backing directory or the audit log controls
// (mount records, master URIs, audit records) through it, so that such a
// string cannot recolour or clear the terminal, set its title, or forge
// extra lines.
func printable(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x` + strconv.FormatUint(uint64(s[i])|0x100, 16)[1:])
		case escaped(r):
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// needsEscape reports whether printable would change s.
func needsEscape(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || escaped(r) {
			return true
		}
	}
	return false
}

// escaped reports whether printable writes r as an escape.
func escaped(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}
