package main

// The gcp-kms master key: gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K.
import _ "github.com/cofferfs/coffer/keys/gcpkms"
