// Package kvtest runs a contract server for tests of the azure-kv master
// key: an HTTPS server on 127.0.0.1 that speaks Key Vault's REST wire format
// for the wrapKey and unwrapKey operations, as documented at
//
//	https://learn.microsoft.com/rest/api/keyvault/keys/wrap-key/wrap-key
//	https://learn.microsoft.com/rest/api/keyvault/keys/unwrap-key/unwrap-key
//	https://learn.microsoft.com/azure/key-vault/general/authentication-requests-and-responses
//
// It holds real RSA keys with versions and really wraps with RSA-OAEP-256,
// asks for a bearer token with the documented 401 challenge, and answers
// failures with the documented status codes and error bodies
// ({"error":{"code":…,"message":…}}). No Key Vault can run here, so this
// is a test of the request/response contract, not of the service.
package kvtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
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
	"time"
)

// Token is the bearer token the server accepts.
const Token = "kvtest-token"

// Tenant is the tenant the server's challenge names.
const Tenant = "72f988bf-0000-0000-0000-000000000001"

// Server is a running contract server.
type Server struct {
	// URL is the server's https://127.0.0.1:PORT URL, for --kms-endpoint.
	URL string

	srv *httptest.Server

	mu       sync.Mutex
	keys     map[string]*key
	failures []Failure
	calls    []string // "wrapkey NAME VERSION", in order
	tokens   int      // requests that carried a token
}

type key struct {
	versions []*version // oldest first
	deny     map[string]bool
}

type version struct {
	id      string
	priv    *rsa.PrivateKey
	enabled bool
}

// Failure is a canned error answer for the next matching requests.
type Failure struct {
	Status  int
	Code    string
	Message string
	// Times is how many requests get this answer.
	Times int
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{keys: make(map[string]*key)}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.Stop)
	return s
}

// Stop stops the server; later requests fail to connect.
func (s *Server) Stop() { s.srv.Close() }

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// WriteCA writes the server's certificate as PEM to a file in a test
// directory and returns its path, for SSL_CERT_FILE in child processes.
func (s *Server) WriteCA(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kvtest-ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// CreateKey creates an RSA key (or a new version of it) and returns the new
// version's ID.
func (s *Server) CreateKey(t testing.TB, name string) string {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	v := &version{id: hex.EncodeToString(id), priv: priv, enabled: true}

	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[name]
	if k == nil {
		k = &key{deny: make(map[string]bool)}
		s.keys[name] = k
	}
	k.versions = append(k.versions, v)
	return v.id
}

// Unwrap decrypts a wrapped value with a key version, as unwrapKey would,
// for checks made outside the client.
func (s *Server) Unwrap(name, id string, wrapped []byte) ([]byte, error) {
	s.mu.Lock()
	v := s.find(name, id)
	s.mu.Unlock()
	if v == nil {
		return nil, fmt.Errorf("no key %s/%s", name, id)
	}
	return rsa.DecryptOAEP(sha256.New(), nil, v.priv, wrapped, nil)
}

// SetEnabled enables or disables every version of a key.
func (s *Server) SetEnabled(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.keys[name].versions {
		v.enabled = on
	}
}

// Deny refuses an operation ("wrapKey", "unwrapKey") on a key with 403, as
// an access policy without that permission does.
func (s *Server) Deny(name, op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[name].deny[op] = true
}

// Fail queues a canned error answer for the next authorised requests.
func (s *Server) Fail(f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, f)
}

// Calls returns the operations served so far, as "wrapkey NAME VERSION".
func (s *Server) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

// find returns a key version; id "" is the newest. Callers hold s.mu.
func (s *Server) find(name, id string) *version {
	k := s.keys[name]
	if k == nil || len(k.versions) == 0 {
		return nil
	}
	if id == "" {
		return k.versions[len(k.versions)-1]
	}
	for _, v := range k.versions {
		if v.id == id {
			return v
		}
	}
	return nil
}

// request is the body of wrapKey and unwrapKey: KeyOperationsParameters.
type request struct {
	Alg   string `json:"alg"`
	Value string `json:"value"`
}

// response is KeyOperationResult.
type response struct {
	KID   string `json:"kid"`
	Value string `json:"value"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	// Without a token, Key Vault answers 401 with a challenge naming the
	// authority and resource; the client then fetches a token and retries.
	auth := r.Header.Get("Authorization")
	if auth == "" {
		w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/`+
			Tenant+`", resource="https://vault.azure.net"`)
		writeError(w, http.StatusUnauthorized, "Unauthorized",
			"AKV10000: Request is missing a Bearer or PoP token.")
		return
	}
	if auth != "Bearer "+Token {
		writeError(w, http.StatusUnauthorized, "Unauthorized",
			"AKV10032: Invalid issuer. Expected one of https://sts.windows.net/"+Tenant+"/.")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens++
	if len(s.failures) > 0 {
		f := &s.failures[0]
		if f.Times--; f.Times <= 0 {
			s.failures = s.failures[1:]
		}
		if f.Status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		writeError(w, f.Status, f.Code, f.Message)
		return
	}
	s.operate(w, r)
}

// operate serves POST /keys/{name}[/{version}]/{wrapkey,unwrapkey}; no
// version means the newest. Callers hold s.mu.
func (s *Server) operate(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("api-version") == "" {
		writeError(w, http.StatusBadRequest, "BadParameter", "api-version is missing")
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) == 3 { // no version: the SDK drops the empty segment
		parts = []string{parts[0], parts[1], "", parts[2]}
	}
	if r.Method != http.MethodPost || len(parts) != 4 || parts[0] != "keys" ||
		(parts[3] != "wrapkey" && parts[3] != "unwrapkey") {
		writeError(w, http.StatusNotFound, "NotFound", "The requested resource was not found")
		return
	}
	name, id, op := parts[1], parts[2], parts[3]
	v := s.find(name, id)
	if v == nil {
		writeError(w, http.StatusNotFound, "KeyNotFound", fmt.Sprintf("A key with (name/id) "+
			"%s/%s was not found in this key vault.", name, id))
		return
	}
	opName := map[string]string{"wrapkey": "wrapKey", "unwrapkey": "unwrapKey"}[op]
	if s.keys[name].deny[opName] {
		writeError(w, http.StatusForbidden, "Forbidden", "The user, group or application "+
			"does not have keys "+opName+" permission on key vault.")
		return
	}
	if !v.enabled {
		writeError(w, http.StatusForbidden, "Forbidden", "Operation "+opName+
			" is not allowed on a disabled key.")
		return
	}

	var req request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "BadParameter", "The request body is not valid JSON.")
		return
	}
	if req.Alg != "RSA-OAEP-256" {
		writeError(w, http.StatusBadRequest, "BadParameter", "Invalid algorithm: "+
			strconv.Quote(req.Alg))
		return
	}
	in, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(req.Value, "="))
	if err != nil || len(in) == 0 {
		writeError(w, http.StatusBadRequest, "BadParameter", "Property value is not base64url.")
		return
	}

	var out []byte
	if op == "wrapkey" {
		out, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, &v.priv.PublicKey, in, nil)
	} else {
		out, err = rsa.DecryptOAEP(sha256.New(), nil, v.priv, in, nil)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadParameter", "The parameter is incorrect.")
		return
	}
	s.calls = append(s.calls, op+" "+name+" "+id)
	writeJSON(w, http.StatusOK, response{
		KID:   "https://" + r.Host + "/keys/" + name + "/" + v.id,
		Value: base64.RawURLEncoding.EncodeToString(out),
	})
}

// writeError writes Key Vault's error body, KeyVaultError.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	type inner struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	writeJSON(w, status, struct {
		Error inner `json:"error"`
	}{inner{code, msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// CertPool returns a pool holding the server's certificate.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.srv.Certificate())
	return p
}

// IdentityHeader is the secret header value of the managed identity
// endpoint that ManagedIdentity starts.
const IdentityHeader = "kvtest-identity-header"

// ManagedIdentity starts a managed identity endpoint in App Service's wire
// format on loopback http and points the standard IDENTITY_ENDPOINT and
// IDENTITY_HEADER variables at it, so that DefaultAzureCredential fetches
// the server's Token there, as on an App Service host. It clears the
// AZURE_* credential variables so that the chain gets that far. See
// https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference
func (s *Server) ManagedIdentity(t testing.TB) {
	t.Helper()
	id := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case r.Header.Get("X-IDENTITY-HEADER") != IdentityHeader:
			writeJSON(w, http.StatusUnauthorized, map[string]string{
				"error": "invalid_request", "error_description": "X-IDENTITY-HEADER is wrong"})
		case q.Get("api-version") != "2019-08-01" || q.Get("resource") != "https://vault.azure.net":
			writeJSON(w, http.StatusBadRequest, map[string]string{
				"error": "invalid_request", "error_description": "bad api-version or resource"})
		default:
			writeJSON(w, http.StatusOK, map[string]string{
				"access_token": Token,
				"expires_on":   strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10),
				"resource":     "https://vault.azure.net",
				"token_type":   "Bearer",
			})
		}
	}))
	t.Cleanup(id.Close)
	for _, v := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET",
		"AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME", "AZURE_FEDERATED_TOKEN_FILE",
		"MSI_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT"} {
		t.Setenv(v, "") // restores the variable when the test ends
		os.Unsetenv(v)  // set but empty counts as set for azidentity
	}
	t.Setenv("IDENTITY_ENDPOINT", id.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", IdentityHeader)
}
