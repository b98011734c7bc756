package recovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// maxKeyFile bounds what a recovery key file may hold: a few lines.
const maxKeyFile = 16 << 10

func init() {
	masterkey.Register(masterkey.Kind{
		Scheme:    Kind,
		Name:      Kind,
		Form:      URI,
		Canonical: canonical,
		Enroll:    enroll,
		Open:      open,
	})
}

func canonical(uri string) (string, error) {
	if uri != URI {
		return "", fmt.Errorf("%w: recovery: takes nothing after the colon; the public key is "+
			"kept in the volume config", masterkey.ErrMalformed)
	}
	return URI, nil
}

// enroll adds an existing recovery key (opts.RecoveryKey) to a volume. New
// recovery keys come from Generate ("coffer recovery new").
func enroll(ctx context.Context, _ masterkey.Ref, opts masterkey.Options) (keys.Enrollment, error) {
	if opts.RecoveryKey == "" {
		return keys.Enrollment{}, fmt.Errorf("%w: make a new recovery key with 'coffer recovery "+
			"new BACKING', or pass --recovery-key FILE to add an existing one", ErrNoPrivateKey)
	}
	priv, err := Load(ctx, opts)
	if err != nil {
		return keys.Enrollment{}, err
	}
	defer priv.Wipe()
	return priv.Enrollment()
}

// open returns the master of a recovery entry: it always seals; it unseals
// only when opts names the private key.
func open(ctx context.Context, entry keys.MasterEntry, opts masterkey.Options) (keys.Master, error) {
	p, err := ParseParams(entry.Params)
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", entry.ID, err)
	}
	if opts.RecoveryKey == "" {
		return NewMaster(p, nil)
	}
	priv, err := Load(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer priv.Wipe()
	return NewMaster(p, priv)
}

// Load reads the private recovery key that opts names: the file
// opts.RecoveryKey (which must not be accessible to group or others), or
// opts.RecoveryKeyText when it is "-".
func Load(ctx context.Context, opts masterkey.Options) (*PrivateKey, error) {
	var text *keys.Secret
	var err error
	switch {
	case opts.RecoveryKey == "":
		return nil, ErrNoPrivateKey
	case opts.RecoveryKey == "-" && opts.RecoveryKeyText == nil:
		return nil, fmt.Errorf("%w: nothing to read the recovery key from", ErrNoPrivateKey)
	case opts.RecoveryKey == "-":
		text, err = opts.RecoveryKeyText(ctx)
	default:
		text, err = readFile(opts.RecoveryKey)
	}
	if err != nil {
		return nil, err
	}
	defer text.Wipe()
	return Parse(string(text.InsecureBytes()))
}

// PermissionError reports a recovery key file that others can read.
type PermissionError struct {
	Path string
	Mode os.FileMode
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("recovery key file %s is accessible to group or others (mode %04o)",
		e.Path, e.Mode)
}

// Hint says how to fix it.
func (e *PermissionError) Hint() string { return "chmod 600 " + e.Path }

func readFile(path string) (*keys.Secret, error) {
	f, fi, err := keys.OpenSecretFile(path, "recovery key file")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, &PermissionError{Path: path, Mode: fi.Mode().Perm()}
	}
	buf := make([]byte, maxKeyFile+1)
	defer clear(buf)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("failed to read recovery key file: %w", err)
	}
	if n > maxKeyFile {
		return nil, fmt.Errorf("recovery key file %s is larger than %d bytes: not a recovery key",
			path, maxKeyFile)
	}
	return keys.SecretFromBytes(buf[:n]), nil
}
