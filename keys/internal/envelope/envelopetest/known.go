// Package envelopetest holds the test scaffolding shared by the master-key
// kinds whose key stays in a key service (aws-kms, gcp-kms, hcvault,
// azure-kv): known-answer vectors of their sealed copies, read from
// testdata and opened with golang.org/x/crypto alone, independently of the
// code under test.
package envelopetest

import (
	"bufio"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/chacha20poly1305"
)

// Known is a known-answer vector: a sealed copy, the ring AD it is bound to
// and what it holds.
type Known struct {
	// Volume and Master make the ring AD.
	Volume []byte
	Master string
	// Plaintext is what the copy seals.
	Plaintext []byte
	// KEK is what the key service returned for the wrapped key encryption
	// key: the KEK itself, or for azure-kv KEK || SHA-256(ring AD).
	KEK []byte
	// Sealed is the sealed copy.
	Sealed []byte
}

// Load reads a vector: "# " comment lines, then one "field value" line per
// field, values in hex except master. The KEK field is kek or unwrapped.
func Load(t testing.TB, path string) Known {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()

	var k Known
	hexField := map[string]*[]byte{"volume": &k.Volume, "plaintext": &k.Plaintext,
		"kek": &k.KEK, "unwrapped": &k.KEK, "sealed": &k.Sealed}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		require.True(t, ok, "%s: line %q has no value", path, line)
		if name == "master" {
			k.Master = value
			continue
		}
		dst, ok := hexField[name]
		require.True(t, ok, "%s: unknown field %q", path, name)
		*dst, err = hex.DecodeString(value)
		require.NoError(t, err, "%s: field %s", path, name)
	}
	require.NoError(t, sc.Err())
	require.Len(t, k.Volume, 16, "%s: volume", path)
	require.NotEmpty(t, k.Master, "%s: master", path)
	require.NotEmpty(t, k.KEK, "%s: kek", path)
	require.NotEmpty(t, k.Sealed, "%s: sealed", path)
	return k
}

// RingAD returns the ring AD of docs/format.md, "coffer-ring-v1\0" ||
// volume ID || master ID, built here rather than by package keys.
func (k Known) RingAD() []byte {
	ad := append([]byte("coffer-ring-v1\x00"), k.Volume...)
	return append(ad, k.Master...)
}

// OpenBox opens the box that starts at sealed[headEnd:] as docs/format.md
// lays it out (24-byte nonce, XChaCha20-Poly1305 ciphertext and tag) with
// kek and the associated data ringAD || sealed[:headEnd].
func OpenBox(t testing.TB, kek, sealed []byte, headEnd int, ringAD []byte) []byte {
	t.Helper()
	require.Greater(t, len(sealed), headEnd+chacha20poly1305.NonceSizeX)
	a, err := chacha20poly1305.NewX(kek)
	require.NoError(t, err)
	ad := append(append([]byte{}, ringAD...), sealed[:headEnd]...)
	box := sealed[headEnd:]
	pt, err := a.Open(nil, box[:chacha20poly1305.NonceSizeX], box[chacha20poly1305.NonceSizeX:],
		ad)
	require.NoError(t, err, "the box does not open under the documented layout")
	return pt
}
