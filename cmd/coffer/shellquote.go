package main

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// shellQuote returns s as one word for a POSIX shell: unchanged when it
// holds only characters no shell treats specially, else in single quotes.
// A word with control characters (a newline, say) or other characters
// that printable escapes is given in the $'...' form of bash, zsh and ksh
// instead, so that the command stays on one line, copies intact, and names
// the same path.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, shellSafe) == "" {
		return s
	}
	if needsEscape(s) {
		return dollarQuote(s)
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// dollarQuote returns s in the $'...' form: backslash and quote escaped,
// tab, newline and carriage return by name, and every other byte of a
// character printable would escape as \xHH.
func dollarQuote(s string) string {
	var b strings.Builder
	b.WriteString("$'")
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\\' || r == '\'':
			b.WriteString(`\` + string(r))
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == utf8.RuneError && size == 1, escaped(r):
			for _, c := range []byte(s[i : i+size]) {
				b.WriteString(`\x` + strconv.FormatUint(uint64(c)|0x100, 16)[1:])
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteString("'")
	return b.String()
}

// shellSafe lists the characters shellQuote leaves unquoted.
const shellSafe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-"
