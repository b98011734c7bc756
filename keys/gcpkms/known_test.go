package gcpkms

import (
	"testing"

	"github.com/cofferfs/coffer/keys/internal/envelope/envelopetest"
)

// TestKnownAnswer opens a sealed copy made by an earlier coffer, given the
// KEK that Cloud KMS returned for it (testdata/sealed-v1.txt says how).
func TestKnownAnswer(t *testing.T) {
	envelopetest.KnownAnswer(t, "testdata/sealed-v1.txt", parseSealed)
}
