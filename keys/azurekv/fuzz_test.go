package azurekv

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/cofferfs/coffer/keys/internal/box"
)

// FuzzParseSealed checks that parseSealed never panics and that what it
// accepts splits the input exactly.
func FuzzParseSealed(f *testing.F) {
	version := "0123456789abcdef0123456789abcdef"
	valid := append([]byte{SealVersion, byte(len(version))}, version...)
	valid = append(valid, 0, 4, 'w', 'r', 'a', 'p')
	f.Add(append(valid, make([]byte, box.Overhead)...))
	f.Add([]byte{SealVersion, 0xff, 0xff})
	f.Add([]byte{SealVersion, 1, 'a', 0, 0})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, sealed []byte) {
		v, wrapped, boxed, err := parseSealed(sealed)
		if err != nil {
			return
		}
		if v == "" || len(v) > maxVersion || !isName(v) || len(wrapped) == 0 ||
			len(wrapped) > maxWrapped || len(boxed) < box.Overhead {
			t.Fatalf("accepted version %q, wrapped %d bytes, box %d", v, len(wrapped), len(boxed))
		}
		joined := append([]byte{SealVersion, byte(len(v))}, v...)
		joined = binary.BigEndian.AppendUint16(joined, uint16(len(wrapped)))
		joined = append(append(joined, wrapped...), boxed...)
		if !bytes.Equal(joined, sealed) {
			t.Fatal("parts do not rebuild the input")
		}
	})
}
