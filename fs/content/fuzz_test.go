package content

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzParseHeader checks that ParseHeader never panics, that every header it
// accepts has a current slot, and that it re-marshals to the same bytes: a
// header has exactly one encoding.
func FuzzParseHeader(f *testing.F) {
	for _, v := range headerVectors(f) {
		f.Add(v.bytes)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			var ve *VersionError
			if !errors.Is(err, ErrCorrupt) && !errors.As(err, &ve) {
				t.Fatalf("error %v is neither ErrCorrupt nor a VersionError", err)
			}
			return
		}
		if len(h.Order()) == 0 {
			t.Fatal("accepted a header with no key slot in use")
		}
		out, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("failed to re-marshal a parsed header: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-marshalled header differs:\n in %x\nout %x", b, out)
		}
	})
}

// FuzzOpen checks that Open never panics and that no input authenticates
// under a key the fuzzer does not know.
func FuzzOpen(f *testing.F) {
	f.Add(make([]byte, CipherBlockSize), uint64(0))
	f.Add(make([]byte, Overhead+1), uint64(1))
	f.Add([]byte{}, uint64(2))
	f.Add(bytes.Repeat([]byte{0xff}, CipherBlockSize+1), ^uint64(0))

	c, err := NewCipher(bytes.Repeat([]byte{0x42}, DEKSize), FileID{0x42})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sealed []byte, block uint64) {
		out, err := c.Open(nil, sealed, block)
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("Open of random input: got %x, %v; want ErrAuth", out, err)
		}
	})
}

// FuzzSealOpen checks that a sealed block opens to its plaintext and that
// changing any one byte makes it fail.
func FuzzSealOpen(f *testing.F) {
	f.Add([]byte("hello"), uint64(0), uint(0), byte(1))
	f.Add(make([]byte, BlockSize), uint64(1<<40), uint(4135), byte(0x80))

	c, err := NewCipher(bytes.Repeat([]byte{0x17}, DEKSize), FileID{0x17})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, plain []byte, block uint64, at uint, flip byte) {
		if len(plain) == 0 || len(plain) > BlockSize {
			return
		}
		sealed := c.Seal(nil, plain, block)
		got, err := c.Open(nil, sealed, block)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("round trip failed: %v", err)
		}
		if flip == 0 {
			return
		}
		sealed[at%uint(len(sealed))] ^= flip
		if _, err := c.Open(nil, sealed, block); !errors.Is(err, ErrAuth) {
			t.Fatalf("modified block: got %v, want ErrAuth", err)
		}
	})
}

// TestFuzzCorpusValidHeaders makes sure the committed corpus still holds
// headers that parse, so the fuzzer starts from the accepting paths.
func TestFuzzCorpusValidHeaders(t *testing.T) {
	for _, name := range []string{"valid-new-file", "valid-two-slots"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzParseHeader", name))
			require.NoError(t, err)
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			require.Len(t, lines, 2)
			require.Equal(t, "go test fuzz v1", lines[0])

			lit, ok := strings.CutPrefix(lines[1], "[]byte(")
			require.True(t, ok)
			b, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
			require.NoError(t, err)
			_, err = ParseHeader([]byte(b))
			assert.NoError(t, err)
		})
	}
}
