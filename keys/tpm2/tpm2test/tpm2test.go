//go:build linux

// Package tpm2test runs swtpm, a software TPM 2.0, for tests: each call to
// Start runs a new swtpm process with its own state, so it is another TPM.
package tpm2test

import (
	"crypto/sha256"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
	"github.com/stretchr/testify/require"
)

// TPM is a running swtpm.
type TPM struct {
	// Socket is the Unix socket of the TPM command channel, for
	// masterkey.Options.TPMDevice and --tpm-device.
	Socket string
}

// Require skips t when swtpm is not installed, or fails it when the CI
// environment variable is set: CI must never pass by skipping.
func Require(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("swtpm is not installed (make deps installs it): %v", err)
		}
		t.Skipf("swtpm is not installed (make deps installs it): %v", err)
	}
}

// Start starts a swtpm with fresh state in a temporary directory and stops
// it when t ends. The command socket is bound here and handed to swtpm as a
// listening descriptor, so it accepts connections as soon as Start returns.
func Start(t testing.TB) *TPM {
	t.Helper()
	Require(t)
	// Unix socket paths are limited to 108 bytes; t.TempDir() may be longer.
	dir, err := os.MkdirTemp("", "swtpm")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	state := filepath.Join(dir, "state")
	require.NoError(t, os.Mkdir(state, 0o700))

	sock := filepath.Join(dir, "cmd.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	require.NoError(t, err)
	ln.SetUnlinkOnClose(false)
	f, err := ln.File()
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	defer f.Close()

	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+state,
		"--server", "type=unixio,fd=3", "--flags", "not-need-init,startup-clear",
		"--log", "file="+filepath.Join(dir, "swtpm.log"))
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(dir, "swtpm.log")); err == nil {
				t.Logf("swtpm log:\n%s", log)
			}
		}
	})
	return &TPM{Socket: sock}
}

// ExtendPCR extends PCR pcr of the SHA-256 bank with the hash of data, as a
// boot loader measuring a new component would.
func (s *TPM) ExtendPCR(t testing.TB, pcr uint, data string) {
	t.Helper()
	tpm, err := linuxudstpm.Open(s.Socket)
	require.NoError(t, err)
	defer tpm.Close()
	sum := sha256.Sum256([]byte(data))
	_, err = tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{
			{HashAlg: tpm2.TPMAlgSHA256, Digest: sum[:]},
		}},
	}.Execute(tpm)
	require.NoError(t, err, "extend PCR %d", pcr)
}

// Loaded returns the number of transient objects and sessions loaded in
// the TPM: what a caller forgot to flush. swtpm has no resource manager, so
// they stay until flushed.
func (s *TPM) Loaded(t testing.TB) int {
	t.Helper()
	tpm, err := linuxudstpm.Open(s.Socket)
	require.NoError(t, err)
	defer tpm.Close()
	n := 0
	for _, ht := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession,
		tpm2.TPMHTPolicySession} {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles,
			Property: uint32(ht) << 24, PropertyCount: 64}.Execute(tpm)
		require.NoError(t, err)
		handles, err := rsp.CapabilityData.Data.Handles()
		require.NoError(t, err)
		for _, h := range handles.Handle {
			if uint32(h)>>24 == uint32(ht) {
				n++
			}
		}
	}
	return n
}
