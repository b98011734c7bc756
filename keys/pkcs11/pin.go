package pkcs11

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// maxPIN bounds a PIN file: PKCS#11 PINs are short, and a large file is a
// mistake.
const maxPIN = 256

// ErrNoPIN reports a token that needs a PIN when no PIN source is given.
var ErrNoPIN = errors.New("no PIN source for the token")

// PINFileError reports a PIN file that group or others may access.
type PINFileError struct {
	Path string
	Mode os.FileMode
}

// Error names the file, its mode and the fix.
func (e *PINFileError) Error() string {
	return fmt.Sprintf("PIN file %s has mode %04o: group or others can access it", e.Path,
		uint32(e.Mode))
}

// Hint returns the command that fixes the permissions, for a CLI "hint:"
// line.
func (e *PINFileError) Hint() string { return "chmod 600 " + e.Path }

// ReadPINFile reads a PIN from path: the whole file less one trailing "\n"
// or "\r\n". It refuses a file that is not regular, that group or others
// may access, that is empty or longer than 256 bytes. The checks run on
// the opened file.
func ReadPINFile(path string) (*keys.Secret, error) {
	f, fi, err := keys.OpenSecretFile(path, "PIN file")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, &PINFileError{Path: path, Mode: fi.Mode().Perm()}
	}

	buf := make([]byte, maxPIN+1)
	defer clear(buf)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("failed to read PIN file %s: %w", path, err)
	}
	if n > maxPIN {
		return nil, fmt.Errorf("PIN file %s is longer than %d bytes", path, maxPIN)
	}
	pin := bytes.TrimSuffix(buf[:n], []byte("\n"))
	pin = bytes.TrimSuffix(pin, []byte("\r"))
	if len(pin) == 0 {
		return nil, fmt.Errorf("PIN file %s is empty", path)
	}
	return keys.SecretFromBytes(pin), nil
}

// getPIN returns the PIN for the token of u: from the URI's pin-source,
// else from opts.PINFile, else from opts.PIN.
func getPIN(ctx context.Context, u *URI, opts masterkey.Options) (*keys.Secret, error) {
	switch {
	case u.PINSource != "":
		return ReadPINFile(u.PINSource)
	case opts.PINFile != "":
		return ReadPINFile(opts.PINFile)
	case opts.PIN != nil:
		pin, err := opts.PIN(ctx, masterkey.PINRequest{Token: u.Token, URI: u.String()})
		if err != nil {
			return nil, fmt.Errorf("failed to read the PIN of token %q: %w", u.Token, err)
		}
		if pin.Len() == 0 {
			pin.Wipe()
			return nil, fmt.Errorf("the PIN of token %q is empty", u.Token)
		}
		return pin, nil
	}
	return nil, fmt.Errorf("%w: token %q needs a PIN: pass --pin-file FILE or add "+
		"pin-source=file:/PATH to the URI", ErrNoPIN, u.Token)
}
