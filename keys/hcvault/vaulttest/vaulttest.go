// Package vaulttest is a contract server for coffer's Vault transit client:
// an httptest server on 127.0.0.1 that answers the two transit calls coffer
// makes in the wire format Vault documents, and really encrypts.
//
// A Vault server does not build from the Go module proxy here, so the tests
// run against this server instead. It follows
//
//   - https://developer.hashicorp.com/vault/api-docs/secret/transit#encrypt-data
//     and #decrypt-data: POST or PUT /v1/MOUNT/encrypt/NAME with
//     {"plaintext", "associated_data", "context"} (base64) answers
//     {"data": {"ciphertext": "vault:vN:BASE64", "key_version": N}};
//     /v1/MOUNT/decrypt/NAME with {"ciphertext", "associated_data",
//     "context"} answers {"data": {"plaintext": BASE64}}.
//   - https://developer.hashicorp.com/vault/api-docs#error-response and
//     #http-status-codes: errors are {"errors": ["message", ...]} with 400
//     for an invalid request (including a missing key and a ciphertext that
//     does not authenticate), 403 for a missing, invalid or unauthorised
//     token, 404 for an unknown path, 429 for a rate limit, 500 for an
//     internal error and 503 while sealed.
//
// Keys are aes256-gcm96 keys: the ciphertext after "vault:vN:" is
// base64(12-byte nonce || AES-256-GCM ciphertext and tag), with
// associated_data as the GCM additional data. A derived key (derived=true)
// encrypts under HKDF-SHA256(key version, info = context) and refuses a
// request without context, as Vault's derived keys do; a key that is not
// derived ignores context. Keys have versions (Rotate) and a
// min_decryption_version.
package vaulttest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Token is the token the server accepts unless SetToken changes it.
const Token = "hvs.coffer-test-token"

// Server is a running contract server.
type Server struct {
	// Address is the server's URL, https://127.0.0.1:PORT or
	// http://127.0.0.1:PORT.
	Address string
	// Host is 127.0.0.1:PORT, for hcvault URIs.
	Host string

	srv *httptest.Server

	mu        sync.Mutex
	token     string
	namespace string
	mounts    map[string]map[string]*key // mount -> name -> key
	faults    []fault
	requests  []Request
	sealed    bool
}

// Request is a transit call the server received, for tests that check the
// request shape.
type Request struct {
	Method, Path, Namespace string
	Body                    map[string]any
}

type key struct {
	derived    bool
	versions   [][]byte // versions[i] is version i+1
	minDecrypt int
}

type fault struct {
	status int
	body   string
}

// Start starts a server with TLS, which is what the Vault client uses by
// default, and stops it when the test ends. The server's certificate is
// for 127.0.0.1; CAFile writes it out for VAULT_CACERT.
func Start(t testing.TB) *Server { return start(t, true) }

// StartPlain starts a server without TLS, as "vault server -dev" runs.
func StartPlain(t testing.TB) *Server { return start(t, false) }

func start(t testing.TB, useTLS bool) *Server {
	t.Helper()
	s := &Server{token: Token, mounts: map[string]map[string]*key{"transit": {}}}
	if useTLS {
		s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	} else {
		s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	}
	t.Cleanup(s.Stop)
	s.Address = s.srv.URL
	s.Host = strings.TrimPrefix(strings.TrimPrefix(s.srv.URL, "https://"), "http://")
	return s
}

// Stop stops the server. It is idempotent.
func (s *Server) Stop() { s.srv.Close() }

// CAFile writes the server's certificate to a PEM file in a temporary
// directory and returns its path.
func (s *Server) CAFile(t testing.TB) string {
	t.Helper()
	cert := s.srv.Certificate()
	if cert == nil {
		t.Fatal("vaulttest: the server has no TLS certificate")
	}
	p := filepath.Join(t.TempDir(), "vault-ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// CertPool returns a pool holding the server's certificate.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.srv.Certificate())
	return p
}

// TLSConfig returns a client TLS configuration that trusts the server.
func (s *Server) TLSConfig() *tls.Config { return &tls.Config{RootCAs: s.CertPool()} }

// SetEnv points the Vault client of this process and its children at the
// server's token and CA, away from the user's token file and Vault
// settings, for the rest of the test. For a TLS server it also sets
// VAULT_ADDR to the server, as a vault CLI user has it, which confirms
// the server of hcvault URIs naming s.Host (hcvault.Confirm).
func SetEnv(t testing.TB, s *Server) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("VAULT_TOKEN", Token)
	for _, v := range []string{"VAULT_ADDR", "VAULT_AGENT_ADDR", "VAULT_NAMESPACE",
		"VAULT_CAPATH", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY", "VAULT_TLS_SERVER_NAME",
		"VAULT_SKIP_VERIFY", "VAULT_MAX_RETRIES", "VAULT_CLIENT_TIMEOUT", "VAULT_RATE_LIMIT",
		"VAULT_SRV_LOOKUP", "VAULT_HTTP_PROXY", "VAULT_PROXY_ADDR", "VAULT_DISABLE_REDIRECTS"} {
		t.Setenv(v, "")
	}
	t.Setenv("VAULT_CACERT", "")
	if s != nil && strings.HasPrefix(s.Address, "https:") {
		t.Setenv("VAULT_CACERT", s.CAFile(t))
		t.Setenv("VAULT_ADDR", s.Address)
	}
}

// KeyMaterial returns version v of a key, for tests that check a
// ciphertext independently of the server.
func (s *Server) KeyMaterial(mount, name string, v int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.mounts[mount][name].versions[v-1]...)
}

// CreateKey creates the aes256-gcm96 key name in the mount (created if
// missing), derived or not.
func (s *Server) CreateKey(mount, name string, derived bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mounts[mount] == nil {
		s.mounts[mount] = map[string]*key{}
	}
	s.mounts[mount][name] = &key{derived: derived, versions: [][]byte{newKey()}, minDecrypt: 1}
}

// Rotate adds a version to a key; encryption uses the newest.
func (s *Server) Rotate(mount, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.mounts[mount][name]
	k.versions = append(k.versions, newKey())
}

// SetMinDecryptionVersion sets a key's min_decryption_version.
func (s *Server) SetMinDecryptionVersion(mount, name string, v int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mounts[mount][name].minDecrypt = v
}

// SetToken changes the token the server accepts.
func (s *Server) SetToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = tok
}

// RequireNamespace makes the server answer only requests with the
// X-Vault-Namespace header ns, as a namespace-scoped token would.
func (s *Server) RequireNamespace(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.namespace = ns
}

// Seal makes the server answer every call 503 {"errors":["Vault is sealed"]}.
func (s *Server) Seal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealed = true
}

// Fail makes the next transit call (and only that one) answer status with
// the error messages msgs in Vault's error body.
func (s *Server) Fail(status int, msgs ...string) {
	b, _ := json.Marshal(map[string][]string{"errors": msgs})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fault{status: status, body: string(b)})
}

// Requests returns the transit calls received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func newKey() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return k
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()

	var body map[string]any
	if r.Body != nil {
		_ = json.NewDecoder(r.Body).Decode(&body)
	}
	ns := r.Header.Get("X-Vault-Namespace")
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Namespace: ns,
		Body: body})

	if s.sealed {
		writeErrors(w, http.StatusServiceUnavailable, "Vault is sealed")
		return
	}
	if len(s.faults) > 0 {
		f := s.faults[0]
		s.faults = s.faults[1:]
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.status)
		_, _ = w.Write([]byte(f.body))
		return
	}
	if tok := r.Header.Get("X-Vault-Token"); tok == "" || tok != s.token {
		writeErrors(w, http.StatusForbidden, "permission denied")
		return
	}
	if ns != s.namespace {
		// A token is only valid in its own namespace.
		writeErrors(w, http.StatusForbidden, "permission denied")
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		writeErrors(w, http.StatusMethodNotAllowed, "unsupported operation")
		return
	}

	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	mount, op, name, ok := s.route(path)
	if !ok {
		writeErrors(w, http.StatusNotFound,
			fmt.Sprintf("no handler for route %q. route entry not found.", path))
		return
	}
	k := s.mounts[mount][name]
	if k == nil {
		// Transit answers a missing key with 400, not 404.
		writeErrors(w, http.StatusBadRequest, "encryption key not found")
		return
	}
	switch op {
	case "encrypt":
		s.encrypt(w, k, body)
	case "decrypt":
		s.decrypt(w, k, body)
	}
}

// route splits MOUNT/OP/NAME for a mount the server has.
func (s *Server) route(path string) (mount, op, name string, ok bool) {
	for m := range s.mounts {
		rest, found := strings.CutPrefix(path, m+"/")
		if !found {
			continue
		}
		op, name, found = strings.Cut(rest, "/")
		if found && (op == "encrypt" || op == "decrypt") && name != "" &&
			!strings.Contains(name, "/") {
			return m, op, name, true
		}
	}
	return "", "", "", false
}

// field decodes the optional base64 field f of body.
func field(body map[string]any, f string) ([]byte, bool, error) {
	v, ok := body[f]
	if !ok || v == nil {
		return nil, false, nil
	}
	str, isStr := v.(string)
	if !isStr {
		return nil, true, fmt.Errorf("%s must be a string", f)
	}
	if str == "" {
		return nil, false, nil
	}
	b, err := base64.StdEncoding.DecodeString(str)
	if err != nil {
		return nil, true, fmt.Errorf("failed to base64-decode %s", f)
	}
	return b, true, nil
}

// aead returns the GCM of version v of k for the request's context.
func (k *key) aead(v int, body map[string]any) (cipher.AEAD, string) {
	material := k.versions[v-1]
	ctx, _, err := field(body, "context")
	if err != nil {
		return nil, "failed to base64-decode context"
	}
	if k.derived {
		if len(ctx) == 0 {
			return nil, "missing 'context' for key derivation; the key was created using " +
				"a derived key, which means additional, per-request information must be " +
				"included in order to perform operations with the key"
		}
		material, err = hkdf.Key(sha256.New, material, nil, string(ctx), 32)
		if err != nil {
			return nil, "key derivation failed"
		}
	}
	block, err := aes.NewCipher(material)
	if err != nil {
		return nil, err.Error()
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err.Error()
	}
	return g, ""
}

func (s *Server) encrypt(w http.ResponseWriter, k *key, body map[string]any) {
	pt, ok, err := field(body, "plaintext")
	if err != nil {
		writeErrors(w, http.StatusBadRequest, "failed to base64-decode plaintext")
		return
	}
	if !ok {
		writeErrors(w, http.StatusBadRequest, "missing plaintext to encrypt")
		return
	}
	ad, _, err := field(body, "associated_data")
	if err != nil {
		writeErrors(w, http.StatusBadRequest, err.Error())
		return
	}
	v := len(k.versions)
	g, msg := k.aead(v, body)
	if g == nil {
		writeErrors(w, http.StatusBadRequest, msg)
		return
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		writeErrors(w, http.StatusInternalServerError, "internal error")
		return
	}
	ct := g.Seal(nonce, nonce, pt, ad)
	writeData(w, map[string]any{
		"ciphertext":  "vault:v" + strconv.Itoa(v) + ":" + base64.StdEncoding.EncodeToString(ct),
		"key_version": v,
	})
}

func (s *Server) decrypt(w http.ResponseWriter, k *key, body map[string]any) {
	ct, _ := body["ciphertext"].(string)
	if ct == "" {
		writeErrors(w, http.StatusBadRequest, "missing ciphertext to decrypt")
		return
	}
	rest, ok := strings.CutPrefix(ct, "vault:v")
	verStr, b64, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		writeErrors(w, http.StatusBadRequest, "invalid ciphertext: no prefix")
		return
	}
	v, err := strconv.Atoi(verStr)
	if err != nil || v < 1 {
		writeErrors(w, http.StatusBadRequest, "invalid ciphertext: version number could not "+
			"be decoded")
		return
	}
	if v < k.minDecrypt {
		writeErrors(w, http.StatusBadRequest, "ciphertext or signature version is disallowed "+
			"by policy (too old)")
		return
	}
	if v > len(k.versions) {
		writeErrors(w, http.StatusBadRequest, "invalid key version")
		return
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		writeErrors(w, http.StatusBadRequest, "invalid ciphertext: could not decode base64")
		return
	}
	ad, _, err := field(body, "associated_data")
	if err != nil {
		writeErrors(w, http.StatusBadRequest, err.Error())
		return
	}
	g, msg := k.aead(v, body)
	if g == nil {
		writeErrors(w, http.StatusBadRequest, msg)
		return
	}
	if len(raw) < g.NonceSize()+g.Overhead() {
		writeErrors(w, http.StatusBadRequest, "invalid ciphertext: unable to decrypt")
		return
	}
	pt, err := g.Open(nil, raw[:g.NonceSize()], raw[g.NonceSize():], ad)
	if err != nil {
		writeErrors(w, http.StatusBadRequest, "cipher: message authentication failed")
		return
	}
	writeData(w, map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pt)})
}

// writeData writes a successful response in Vault's envelope.
func writeData(w http.ResponseWriter, data map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"request_id":     "00000000-0000-0000-0000-000000000000",
		"lease_id":       "",
		"renewable":      false,
		"lease_duration": 0,
		"data":           data,
		"wrap_info":      nil,
		"warnings":       nil,
		"auth":           nil,
	})
}

// writeErrors writes Vault's error body.
func writeErrors(w http.ResponseWriter, status int, msgs ...string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string][]string{"errors": msgs})
}
