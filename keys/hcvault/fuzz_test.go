package hcvault

import (
	"bytes"
	"testing"

	"github.com/cofferfs/coffer/keys/internal/envelope/envelopetest"
)

// FuzzParseSealed checks that parseSealed never panics and that what it
// accepts splits the input exactly into a transit ciphertext and a box.
func FuzzParseSealed(f *testing.F) {
	envelopetest.FuzzLayout(f, []byte("vault:v1:AAAA"), maxBlob, parseSealed,
		func(ct []byte) bool { return bytes.HasPrefix(ct, []byte(ciphertextPrefix)) })
}
