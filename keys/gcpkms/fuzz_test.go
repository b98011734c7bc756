package gcpkms

import (
	"bytes"
	"testing"

	"github.com/cofferfs/coffer/keys/internal/box"
	"github.com/cofferfs/coffer/keys/internal/envelope"
)

// FuzzParseSealed checks that parseSealed never panics and that what it
// accepts splits the input exactly.
func FuzzParseSealed(f *testing.F) {
	valid := append([]byte{SealVersion, 0, 4, 'b', 'l', 'o', 'b'}, make([]byte, box.Overhead)...)
	f.Add(valid)
	f.Add([]byte{SealVersion, 0xff, 0xff})
	f.Add([]byte{SealVersion, 0, 0})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, sealed []byte) {
		blob, boxed, err := parseSealed(sealed)
		if err != nil {
			return
		}
		if len(blob) == 0 || len(blob) > maxBlob || len(boxed) < box.Overhead {
			t.Fatalf("accepted blob of %d bytes, box of %d", len(blob), len(boxed))
		}
		joined := append(append(bytes.Clone(sealed[:envelope.HeaderSize]), blob...), boxed...)
		if !bytes.Equal(joined, sealed) {
			t.Fatal("parts do not rebuild the input")
		}
	})
}
