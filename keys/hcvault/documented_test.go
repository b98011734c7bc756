package hcvault

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/hcvault/vaulttest"
)

// documentedServer answers every call with the testdata file body and
// status, and records the request bodies.
type documentedServer struct {
	mu     sync.Mutex
	status int
	body   []byte
	bodies []map[string]any
	paths  []string
}

func (d *documentedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.bodies = append(d.bodies, body)
	d.paths = append(d.paths, r.Method+" "+r.URL.Path)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(d.status)
	_, _ = w.Write(d.body)
}

func (d *documentedServer) answer(t *testing.T, status int, file string) {
	b, err := os.ReadFile(filepath.Join("testdata", file))
	require.NoError(t, err)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.status, d.body = status, b
}

func params(t *testing.T, file string) map[string]bool {
	b, err := os.ReadFile(filepath.Join("testdata", file))
	require.NoError(t, err)
	m := map[string]bool{}
	for _, p := range strings.Fields(string(b)) {
		m[p] = true
	}
	return m
}

// TestDocumentedWireFormat runs the client against the documented example
// bodies, served verbatim: it sends only documented parameters to the
// documented paths, keeps the documented ciphertext, reads the documented
// plaintext field, and reports every message of a documented error body.
func TestDocumentedWireFormat(t *testing.T) {
	vaulttest.SetEnv(t, nil)
	d := &documentedServer{}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	m, err := New(context.Background(), "hcvault://vault.invalid/transit/keys/coffer", srv.URL)
	require.NoError(t, err)
	ad := keys.RingAD(vol1, "m1")

	d.answer(t, 200, "encrypt-response.json")
	sealed, err := m.Seal(context.Background(), []byte("ring"), ad)
	require.NoError(t, err)
	ct, _, err := parseSealed(sealed)
	require.NoError(t, err)
	assert.Equal(t, "vault:v1:abcdefgh", string(ct))

	// The documented plaintext is 20 bytes, not a 32-byte KEK.
	d.answer(t, 200, "decrypt-response.json")
	_, err = m.Unseal(context.Background(), sealed, ad)
	assert.ErrorIs(t, err, keys.ErrWrongKey)
	assert.Contains(t, err.Error(), "decrypted a 20-byte KEK")

	d.answer(t, 400, "error-response.json")
	_, err = m.Unseal(context.Background(), sealed, ad)
	assertVaultError(t, err, ErrRejected, "aes256-gcm96")
	assert.Contains(t, err.Error(), "HTTP 400: message; another message")

	d.mu.Lock()
	defer d.mu.Unlock()
	assert.Equal(t, []string{"PUT /v1/transit/encrypt/coffer", "PUT /v1/transit/decrypt/coffer",
		"PUT /v1/transit/decrypt/coffer"}, d.paths)
	for i, want := range []string{"encrypt-params.txt", "decrypt-params.txt"} {
		documented := params(t, want)
		for p := range d.bodies[i] {
			assert.True(t, documented[p], "parameter %q is not documented for %s", p, want)
		}
	}
}
