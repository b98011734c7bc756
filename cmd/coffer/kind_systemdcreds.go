//go:build linux

package main

// The host credential store master key, systemd-creds:host|tpm2|host+tpm2
// (Linux only).
import _ "github.com/cofferfs/coffer/keys/systemdcreds"
