//go:build linux

package main

// The TPM 2.0 master key, tpm2:?pcrs=N (Linux only).
import _ "github.com/cofferfs/coffer/keys/tpm2"
