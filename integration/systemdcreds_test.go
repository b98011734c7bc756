//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSystemdCreds initialises a volume whose master key is the host
// credential store, mounts it, writes, remounts and reads back.
func TestSystemdCreds(t *testing.T) {
	requireFUSE(t)
	requireTools(t, "systemd-creds")
	v := kindVolume(t, "systemd-creds:host")
	roundTrip(t, v)
}

// TestSystemdCredsTPM checks the TPM-bound credentials: on a machine
// without a TPM, init fails with one clear line and writes nothing; with a
// TPM, the volume round-trips.
func TestSystemdCredsTPM(t *testing.T) {
	requireFUSE(t)
	requireTools(t, "systemd-creds")
	_, noTPM := os.Stat("/dev/tpmrm0")
	for _, uri := range []string{"systemd-creds:tpm2", "systemd-creds:host+tpm2"} {
		t.Run(uri, func(t *testing.T) {
			if noTPM == nil {
				roundTrip(t, kindVolume(t, uri))
				return
			}
			backing := filepath.Join(t.TempDir(), "backing")
			require.NoError(t, os.Mkdir(backing, 0o700))
			_, stderr, err := tryRun("", nil, cofferBin, "init", backing, "--master", uri)
			assert.Equal(t, 1, exitCode(err), "stderr: %s", stderr)
			first, _, _ := strings.Cut(stderr, "\n")
			assert.Contains(t, first, "coffer: error:")
			assert.Contains(t, first, "no TPM")
			entries, err := os.ReadDir(backing)
			require.NoError(t, err)
			assert.Empty(t, entries, "a failed init wrote into the backing directory")
		})
	}
}
