package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/pkcs11/softhsmtest"
)

// TestPlantedPKCS11ModuleNeverLoads replays F2 of the 2026-12-05 review:
// whoever can write the backing directory puts a library there, points the
// volume's PKCS#11 master key at it and moves that key first. mount
// (unlocking with the key file), fsck and rotate must never load it: the
// library's constructor would write a marker file. The mount warns.
func TestPlantedPKCS11ModuleNeverLoads(t *testing.T) {
	f := newMountFixture(t)
	hsm := softhsmtest.New(t)
	hsm.InitToken(t, "coffer")
	hsmURI := "pkcs11:token=coffer;object=app?pin-source=file:" + hsm.PINFile
	requireOK(t, cliProcess(t, "keys", "create", hsmURI))
	requireOK(t, cliProcess(t, "init", f.backing, "--master", f.keyURI(), "--master", hsmURI))

	gcc, err := exec.LookPath("gcc")
	require.NoError(t, err, "gcc builds the cgo binding, so it must be installed")
	marker := filepath.Join(f.dir, "PWNED")
	src := filepath.Join(f.dir, "evil.c")
	require.NoError(t, os.WriteFile(src, []byte(`#include <stdio.h>
__attribute__((constructor)) static void pwn(void) {
	FILE *f = fopen("`+marker+`", "a");
	if (f) { fputs("loaded\n", f); fclose(f); }
}
`), 0o600))
	evil := filepath.Join(f.backing, "evil.so")
	out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", evil, src).CombinedOutput()
	require.NoError(t, err, "gcc: %s", out)
	require.NoError(t, os.Chmod(evil, 0o755))

	cfgPath := filepath.Join(f.backing, ".coffer", "volume.json")
	b, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(b, &cfg))
	masters := cfg["masters"].([]any)
	require.Len(t, masters, 2)
	hsmEntry := masters[1].(map[string]any)
	uri := hsmEntry["uri"].(string)
	require.Contains(t, uri, softhsmtest.Module)
	hsmEntry["uri"] = strings.Replace(uri, softhsmtest.Module, evil, 1)
	cfg["masters"] = []any{hsmEntry, masters[0]}
	b, err = json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfgPath, b, 0o600))

	requireOK(t, f.mount(t))
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	log, err := os.ReadFile(f.log)
	require.NoError(t, err)
	assert.Contains(t, string(log), "refusing to load PKCS#11 module "+evil+
		": it is inside the backing directory")
	assert.Contains(t, string(log), "check the volume config")

	// fsck unlocks with the key file and reports the planted file as damage.
	r := cliProcess(t, "fsck", f.backing)
	assert.Contains(t, r.stdout, "evil.so (no path in the mount")
	assert.Contains(t, r.stderr, "refusing to load PKCS#11 module "+evil)

	r = cliProcess(t, "rotate", f.backing)
	assertFailure(t, r, exitFailure, "refusing to load PKCS#11 module "+evil)
	assert.Contains(t, r.stderr, "hint: a module inside the backing directory is never loaded")
	assert.NoFileExists(t, marker, "the planted module must never be loaded")
}
