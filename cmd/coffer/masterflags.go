package main

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"

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
	f.Var((*endpointValue)(&m.kmsEndpoint), "kms-endpoint",
		"KMS endpoint URL, for a local or private KMS (default: the standard AWS endpoint)")
	f.StringVar(&m.recoveryKey, "recovery-key", "",
		"unlock with the recovery key in this file (mode 0600), or '-' to type it or read stdin")
}

// endpointValue is a flag holding an http or https URL with a host, checked
// when the flag is parsed, so that a typo is a usage error before any key
// is opened.
type endpointValue string

func (v *endpointValue) String() string { return string(*v) }
func (v *endpointValue) Type() string   { return "URL" }

func (v *endpointValue) Set(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an http:// or https:// URL with a host, such as " +
			"http://127.0.0.1:4566")
	}
	*v = endpointValue(s)
	return nil
}

// absolute makes the file and device paths absolute, so that a background
// mount process, which runs in /, finds them.
func (m *masterFlags) absolute() error {
	for _, p := range []*string{&m.pinFile, &m.tpmDevice, &m.recoveryKey} {
		if *p == "" || *p == "-" || filepath.IsAbs(*p) {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("failed to resolve %s: %w", *p, err)
		}
		*p = abs
	}
	return nil
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
