package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/term"

	"github.com/cofferfs/coffer/keys"
)

// maxPassphraseFile bounds what --passphrase-file reads: a passphrase is a
// line, and a huge file is a mistake.
const maxPassphraseFile = 64 << 10

// errNoTerminal is returned when a passphrase is needed but neither a
// terminal nor --passphrase-file can supply it.
var errNoTerminal = withHints(errors.New("no terminal to prompt on"),
	"pass --passphrase-file FILE (a file holding the passphrase, mode 0600)")

// readPassphraseFile reads a passphrase from path: the whole file less one
// trailing newline. A regular file must not be accessible to group or others.
func readPassphraseFile(path string) (*keys.Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open passphrase file: %w", err)
	}
	defer f.Close()

	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("failed to inspect passphrase file: %w", err)
	}
	if m := fi.Mode(); m&(fs.ModeDevice|fs.ModeCharDevice) != 0 || m.IsDir() {
		// /dev/zero or /dev/urandom would be read up to the size limit;
		// a pipe (<(command)) or a FIFO is fine.
		return nil, withHints(fmt.Errorf("passphrase file %s is %s, not a file or a pipe", path,
			keys.FileKind(m)), "give a file holding the passphrase (mode 0600), or a pipe such as <(command)")
	}
	if fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 {
		return nil, withHints(
			fmt.Errorf("passphrase file %s is accessible to group or others (mode %04o)", path, fi.Mode().Perm()),
			"restrict it: chmod 600 "+path)
	}
	return readPassphrase(f)
}

// readPassphrase reads a passphrase from r (a file or the pipe from a parent
// process) into a Secret, dropping one trailing "\n" or "\r\n".
func readPassphrase(r io.Reader) (*keys.Secret, error) {
	buf := make([]byte, maxPassphraseFile+1)
	defer clear(buf)
	n, err := io.ReadFull(r, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if n > maxPassphraseFile {
		return nil, fmt.Errorf("longer than %d bytes", maxPassphraseFile)
	}
	p := bytes.TrimSuffix(buf[:n], []byte("\n"))
	p = bytes.TrimSuffix(p, []byte("\r"))
	return checkPassphrase(keys.SecretFromBytes(p))
}

// promptPassphrase asks for a passphrase on the terminal without echo. With
// confirm it asks twice and insists that both match.
func promptPassphrase(a *app, prompt string, confirm bool) (*keys.Secret, error) {
	in, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return nil, errNoTerminal
	}
	p, err := promptOnce(a, in, prompt)
	if err != nil || !confirm {
		return p, err
	}
	again, err := promptOnce(a, in, "Repeat passphrase: ")
	if err != nil {
		p.Wipe()
		return nil, err
	}
	defer again.Wipe()
	if !p.Equal(again) {
		p.Wipe()
		return nil, errors.New("passphrases do not match")
	}
	return p, nil
}

// promptOnce prints prompt on the terminal and reads one line from it. The
// prompt goes to stderr only if the terminal was opened read-only.
func promptOnce(a *app, in *os.File, prompt string) (*keys.Secret, error) {
	out := io.Writer(in)
	if _, err := fmt.Fprint(in, prompt); err != nil {
		out = a.stderr
		fmt.Fprint(out, prompt)
	}
	b, err := term.ReadPassword(int(in.Fd()))
	fmt.Fprintln(out)
	if err != nil {
		return nil, fmt.Errorf("failed to read from the terminal: %w", err)
	}
	return checkPassphrase(keys.SecretFromBytes(b))
}

// checkPassphrase refuses an empty passphrase.
func checkPassphrase(s *keys.Secret) (*keys.Secret, error) {
	if s.Len() == 0 {
		s.Wipe()
		return nil, errors.New("passphrase is empty")
	}
	return s, nil
}
