package gcpkms

import (
	"testing"

	"github.com/cofferfs/coffer/keys/internal/envelope/envelopetest"
)

// FuzzParseSealed checks that parseSealed never panics and that what it
// accepts splits the input exactly.
func FuzzParseSealed(f *testing.F) {
	envelopetest.FuzzLayout(f, []byte("blob"), maxBlob, parseSealed, nil)
}
