package main

// The HashiCorp Vault transit master key: hcvault://HOST[:PORT]/MOUNT/keys/NAME.
import _ "github.com/cofferfs/coffer/keys/hcvault"
