package hcvault

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cofferfs/coffer/keys/internal/box"
	"github.com/cofferfs/coffer/keys/internal/envelope"
)

// FuzzParseSealed checks that parseSealed never panics and that what it
// accepts splits the input exactly into a transit ciphertext and a box.
func FuzzParseSealed(f *testing.F) {
	ct := "vault:v1:AAAA"
	valid := append(append([]byte{SealVersion, 0, byte(len(ct))}, ct...),
		make([]byte, box.Overhead)...)
	f.Add(valid)
	f.Add([]byte{SealVersion, 0xff, 0xff})
	f.Add([]byte{SealVersion, 0, 0})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, sealed []byte) {
		ct, boxed, err := parseSealed(sealed)
		if err != nil {
			return
		}
		if len(ct) == 0 || len(ct) > maxBlob || len(boxed) < box.Overhead ||
			!strings.HasPrefix(string(ct), ciphertextPrefix) {
			t.Fatalf("accepted ciphertext of %d bytes, box of %d", len(ct), len(boxed))
		}
		joined := append(append(bytes.Clone(sealed[:envelope.HeaderSize]), ct...), boxed...)
		if !bytes.Equal(joined, sealed) {
			t.Fatal("parts do not rebuild the input")
		}
	})
}
