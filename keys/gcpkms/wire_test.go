package gcpkms

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

// TestCRC32C checks the checksum against the CRC-32C check value of RFC
// 3720 appendix B.4 and the catalogue of CRC parameters:
// CRC-32C("123456789") = 0xE3069283.
func TestCRC32C(t *testing.T) {
	assert.Equal(t, int64(0xE3069283), crc32c([]byte("123456789")))
}

// TestWireFormat checks the JSON bodies coffer sends against the field
// names and encodings of the REST reference: bytes in base64, the
// Int64Value checksums as decimal strings, nothing else.
func TestWireFormat(t *testing.T) {
	f := newFixture(t)
	m := f.master(t, f.name)
	ad := keys.RingAD(vol1, "m1")
	sealed, err := m.Seal(context.Background(), []byte("ring"), ad)
	require.NoError(t, err)
	_, err = m.Unseal(context.Background(), sealed, ad)
	require.NoError(t, err)
	blob, _, err := parseSealed(sealed)
	require.NoError(t, err)

	body := func(method string) map[string]string {
		var b map[string]string
		require.NoError(t, json.Unmarshal(f.srv.LastBody(method), &b), "%s", f.srv.LastBody(method))
		return b
	}
	b64 := base64.StdEncoding.EncodeToString
	sum := func(b []byte) string { return strconv.FormatInt(crc32c(b), 10) }

	enc := body("encrypt")
	pt, err := base64.StdEncoding.DecodeString(enc["plaintext"])
	require.NoError(t, err)
	assert.Len(t, pt, 32)
	assert.Equal(t, map[string]string{
		"name":                              f.name,
		"plaintext":                         enc["plaintext"],
		"plaintextCrc32c":                   sum(pt),
		"additionalAuthenticatedData":       b64(ad),
		"additionalAuthenticatedDataCrc32c": sum(ad),
	}, enc)

	assert.Equal(t, map[string]string{
		"name":                              f.name,
		"ciphertext":                        b64(blob),
		"ciphertextCrc32c":                  sum(blob),
		"additionalAuthenticatedData":       b64(ad),
		"additionalAuthenticatedDataCrc32c": sum(ad),
	}, body("decrypt"))
}

// TestNoDebugLogging checks that GOOGLE_SDK_GO_LOGGING_LEVEL=debug does not
// make the client libraries write request bodies (the KEK) or tokens to
// stderr.
func TestNoDebugLogging(t *testing.T) {
	f := newFixture(t)
	t.Setenv("GOOGLE_SDK_GO_LOGGING_LEVEL", "debug")
	stderr, err := os.CreateTemp(t.TempDir(), "stderr")
	require.NoError(t, err)
	old := os.Stderr
	os.Stderr = stderr
	ad := keys.RingAD(vol1, "m1")
	sealed, err := f.master(t, f.name).Seal(context.Background(), []byte("ring"), ad)
	if err == nil {
		_, err = f.master(t, f.name).Unseal(context.Background(), sealed, ad)
	}
	os.Stderr = old
	require.NoError(t, err)
	require.NoError(t, stderr.Close())

	out, err := os.ReadFile(stderr.Name())
	require.NoError(t, err)
	var enc map[string]string
	require.NoError(t, json.Unmarshal(f.srv.LastBody("encrypt"), &enc))
	assert.NotContains(t, string(out), enc["plaintext"])
	assert.NotContains(t, string(out), "ya29.")
	assert.Empty(t, string(out))
}
