//go:build linux

package tpm2

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// DefaultDevice is the TPM used when masterkey.Options.TPMDevice is empty:
// the kernel's resource-managed TPM device.
const DefaultDevice = "/dev/tpmrm0"

// ErrNoTPM reports that the TPM device is missing or cannot be opened.
var ErrNoTPM = errors.New("no TPM")

// openDevice opens path: a character device through the kernel driver, a
// Unix socket as a TPM simulator (swtpm's unixio server, one connection per
// command).
func openDevice(path string) (transport.TPMCloser, error) {
	if path == "" {
		path = DefaultDevice
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist; this machine has no TPM 2.0 or its "+
			"driver is not loaded (name another device or simulator socket with --tpm-device)",
			ErrNoTPM, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: failed to open TPM %s: %w", ErrNoTPM, path, err)
	}

	var t transport.TPMCloser
	switch mode := fi.Mode(); {
	case mode&fs.ModeSocket != 0:
		t, err = linuxudstpm.Open(path)
	case mode&fs.ModeCharDevice != 0:
		t, err = linuxtpm.Open(path)
	default:
		return nil, fmt.Errorf("%w: %s is neither a TPM character device nor a simulator socket",
			ErrNoTPM, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: failed to open TPM %s: %w", ErrNoTPM, path, err)
	}
	return t, nil
}
