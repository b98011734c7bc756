package main

import (
	"github.com/spf13/pflag"

	"github.com/cofferfs/coffer/keys/masterkey"
)

// masterFlags are the flags that tell master keys where their hardware or
// service is. Every command that opens or enrolls master keys takes them.
type masterFlags struct {
	pinFile     string
	tpmDevice   string
	kmsEndpoint string
	recoveryKey string
}

// add registers the flags on f.
func (m *masterFlags) add(f *pflag.FlagSet) {
	f.StringVar(&m.pinFile, "pin-file", "",
		"read the PKCS#11 token PIN from this file (mode 0600); a pin-source in the URI wins")
	f.StringVar(&m.tpmDevice, "tpm-device", "",
		"TPM to use: a device such as /dev/tpmrm0 (default) or a simulator's Unix socket")
	f.StringVar(&m.kmsEndpoint, "kms-endpoint", "",
		"KMS endpoint URL, for a local or private KMS (default: the standard AWS endpoint)")
	f.StringVar(&m.recoveryKey, "recovery-key", "",
		"unlock with the recovery key in this file (mode 0600), or '-' to type it or read stdin")
}

// options returns masterkey.Options carrying the flags.
func (m masterFlags) options() masterkey.Options {
	return masterkey.Options{PINFile: m.pinFile, TPMDevice: m.tpmDevice, KMSEndpoint: m.kmsEndpoint,
		RecoveryKey: m.recoveryKey}
}

// args returns the flags that are set, for the command line of a child
// process.
func (m masterFlags) args() []string {
	var args []string
	if m.pinFile != "" {
		args = append(args, "--pin-file="+m.pinFile)
	}
	if m.tpmDevice != "" {
		args = append(args, "--tpm-device="+m.tpmDevice)
	}
	if m.kmsEndpoint != "" {
		args = append(args, "--kms-endpoint="+m.kmsEndpoint)
	}
	if m.recoveryKey != "" {
		args = append(args, "--recovery-key="+m.recoveryKey)
	}
	return args
}
