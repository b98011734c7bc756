//go:build cgo && unix

package main

// The PKCS#11 master-key kind (pkcs11:token=...;object=...) needs cgo.
import _ "github.com/cofferfs/coffer/keys/pkcs11"
