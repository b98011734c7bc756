// Package gcpkmstest is a Cloud KMS stand-in for tests: an HTTP server on
// 127.0.0.1 that speaks the documented REST wire format of the two methods
// coffer calls and the OAuth 2.0 token exchange of a service account.
//
// Cloud KMS has no local server, so this one follows the reference pages:
//
//   - https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys/encrypt
//   - https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys/decrypt
//   - errors: google.rpc.Status as JSON, https://cloud.google.com/apis/design/errors#http_mapping
//   - CRC32C fields: https://cloud.google.com/kms/docs/data-integrity-guidelines
//   - token: RFC 7523 JWT bearer grant, https://developers.google.com/identity/protocols/oauth2/service-account#httprest
//
// It really encrypts: each key version holds its own AES-256 key and
// ciphertexts are AES-GCM with the request's additionalAuthenticatedData as
// GCM associated data, so a wrong AAD, key or ciphertext fails as it does in
// Cloud KMS. It checks the request CRC32C fields, answers with the response
// ones, keeps key versions with a primary and states, and answers with the
// documented status codes and error bodies. Calls need an access token that
// the server issued in exchange for a JWT signed by the key of the service
// account written by WriteCredentials.
package gcpkmstest

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"io"
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

// Version states, as the CryptoKeyVersionState enum names them.
const (
	Enabled                = "ENABLED"
	Disabled               = "DISABLED"
	Destroyed              = "DESTROYED"
	DestroyScheduled       = "DESTROY_SCHEDULED"
	serviceAccountEmail    = "coffer-test@coffer-test.iam.gserviceaccount.com"
	jwtBearerGrant         = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	maxPlaintext           = 64 * 1024
	ciphertextVersionBytes = 4
)

// Server is a running Cloud KMS stand-in.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:PORT, for
	// --kms-endpoint.
	URL string

	srv *httptest.Server

	mu       sync.Mutex
	keys     map[string]*cryptoKey // by resource name
	denied   map[string]bool       // key names the caller may not use
	saKey    *rsa.PublicKey        // of the service account, nil until WriteCredentials
	tokens   map[string]bool
	faults   []fault
	requests map[string]int // by method: "encrypt", "decrypt", "token"
	bodies   map[string][]byte
}

type cryptoKey struct {
	versions []*keyVersion // version N is versions[N-1]
	primary  int           // 1-based
	purpose  string
}

type keyVersion struct {
	state string
	aead  cipher.AEAD
}

type fault struct {
	status int    // HTTP status of an error answer, or 0
	code   string // google.rpc.Code name
	msg    string
	flip   bool // answer correctly but flip a bit of the returned data
}

// Start starts a server on a loopback port and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{keys: map[string]*cryptoKey{}, denied: map[string]bool{},
		tokens: map[string]bool{}, requests: map[string]int{}, bodies: map[string][]byte{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.Stop)
	return s
}

// Stop closes the server. It is idempotent.
func (s *Server) Stop() { s.srv.Close() }

// CreateKey creates an ENCRYPT_DECRYPT key with one enabled primary
// version and returns its resource name.
func (s *Server) CreateKey(t testing.TB, project, location, ring, key string) string {
	t.Helper()
	name := fmt.Sprintf("projects/%s/locations/%s/keyRings/%s/cryptoKeys/%s", project,
		location, ring, key)
	s.mu.Lock()
	s.keys[name] = &cryptoKey{purpose: "ENCRYPT_DECRYPT"}
	s.mu.Unlock()
	s.Rotate(t, name)
	return name
}

// SetPurpose sets the key's purpose, for example ASYMMETRIC_SIGN.
func (s *Server) SetPurpose(name, purpose string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[name].purpose = purpose
}

// Rotate adds a new version to the key and makes it the primary.
func (s *Server) Rotate(t testing.TB, name string) {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ck := s.keys[name]
	ck.versions = append(ck.versions, &keyVersion{state: Enabled, aead: aead})
	ck.primary = len(ck.versions)
}

// SetState sets the state of version v (1-based) of the key.
func (s *Server) SetState(name string, v int, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[name].versions[v-1].state = state
}

// Deny makes the server refuse the caller the key, with 403.
func (s *Server) Deny(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied[name] = true
}

// FailNext makes the next n KMS calls fail with the given HTTP status and
// google.rpc.Code, for example 429 RESOURCE_EXHAUSTED or 503 UNAVAILABLE.
func (s *Server) FailNext(n, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, fault{status: status, code: code,
			msg: "injected " + code})
	}
}

// CorruptNext makes the next KMS call answer with one bit of its
// ciphertext or plaintext flipped after the CRC32C was computed.
func (s *Server) CorruptNext() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fault{flip: true})
}

// Requests returns how many requests of a method ("encrypt", "decrypt",
// "token") the server received.
func (s *Server) Requests(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[method]
}

// LastBody returns the JSON body of the last request of a method
// ("encrypt", "decrypt"), so that tests can check the wire format.
func (s *Server) LastBody(method string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bodies[method]
}

// Decrypt decrypts a ciphertext of the key directly, bypassing the REST
// API, so that tests can check what coffer asked KMS to bind.
func (s *Server) Decrypt(name string, ciphertext, aad []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ck := s.keys[name]
	if ck == nil {
		return nil, fmt.Errorf("no key %s", name)
	}
	_, pt, ok := ck.open(ciphertext, aad)
	if !ok {
		return nil, fmt.Errorf("decryption failed")
	}
	return pt, nil
}

// WriteCredentials writes a service-account key file whose token_uri is
// this server, points GOOGLE_APPLICATION_CREDENTIALS at it for the rest of
// the test, and keeps the gcloud configuration of the user out of reach.
// It returns the file's path.
func (s *Server) WriteCredentials(t testing.TB) string {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.saKey = &priv.PublicKey
	s.mu.Unlock()
	file := map[string]string{
		"type":           "service_account",
		"project_id":     "coffer-test",
		"private_key_id": "0123456789abcdef",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   serviceAccountEmail,
		"client_id":      "100000000000000000001",
		"token_uri":      s.URL + "/token",
	}
	b, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "service-account.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	Isolate(t)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", path)
	return path
}

// Isolate keeps the Google client libraries away from the user's
// credentials and the metadata server for the rest of the test: no
// GOOGLE_APPLICATION_CREDENTIALS, an empty gcloud configuration directory,
// and a metadata host on a closed loopback port.
func Isolate(t testing.TB) {
	t.Helper()
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	t.Setenv("CLOUDSDK_CONFIG", t.TempDir())
	t.Setenv("GCE_METADATA_HOST", "127.0.0.1:9") // discard port: nothing listens
	t.Setenv("GOOGLE_CLOUD_UNIVERSE_DOMAIN", "")
	t.Setenv("GOOGLE_API_USE_CLIENT_CERTIFICATE", "false")
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		s.token(w, r)
		return
	}
	name, method, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1/"), ":")
	if r.Method != http.MethodPost || !ok || !strings.HasPrefix(r.URL.Path, "/v1/") ||
		(method != "encrypt" && method != "decrypt") {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested URL was not found.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[method]++

	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); !ok ||
		!s.tokens[tok] {
		writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid "+
			"authentication credentials. Expected OAuth 2 access token, login cookie or other "+
			"valid authentication credential.")
		return
	}
	var flip bool
	if len(s.faults) > 0 {
		f := s.faults[0]
		s.faults = s.faults[1:]
		if !f.flip {
			writeError(w, f.status, f.code, f.msg)
			return
		}
		flip = true
	}
	if r.Header.Get("Content-Type") != "application/json" {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Content-Type must be "+
			"application/json")
		return
	}
	ck := s.keys[name]
	switch {
	case s.denied[name] || (ck == nil && !strings.HasPrefix(name, "projects/coffer-test/")):
		// Cloud KMS does not tell callers without permission whether a
		// key exists.
		writeError(w, http.StatusForbidden, "PERMISSION_DENIED", fmt.Sprintf("Permission "+
			"'cloudkms.cryptoKeyVersions.useTo%s' denied on resource '%s' (or it may not "+
			"exist).", titleCase(method), name))
		return
	case ck == nil:
		writeError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("%s not found.", name))
		return
	case ck.purpose != "ENCRYPT_DECRYPT":
		writeError(w, http.StatusBadRequest, "FAILED_PRECONDITION", fmt.Sprintf("%s has "+
			"purpose %s; this operation requires ENCRYPT_DECRYPT.", name, ck.purpose))
		return
	}
	if method == "encrypt" {
		s.encrypt(w, r, name, ck, flip)
	} else {
		s.decrypt(w, r, name, ck, flip)
	}
}

// int64Value is a google.protobuf.Int64Value in JSON: a decimal string
// (proto3 JSON mapping), or a number.
type int64Value struct {
	set bool
	v   int64
}

func (i *int64Value) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "null" {
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return err
	}
	i.set, i.v = true, v
	return nil
}

func crc32c(b []byte) int64 { return int64(crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))) }

// decodeRequest reads the JSON body into req. Bytes fields are base64
// ([]byte in encoding/json).
func (s *Server) decodeRequest(w http.ResponseWriter, r *http.Request, method string,
	req any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Unreadable request body.")
		return false
	}
	s.bodies[method] = body
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(req); err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT",
			"Invalid JSON payload received. "+err.Error())
		return false
	}
	return true
}

// checkCRC verifies an optional checksum field as Cloud KMS does.
func checkCRC(w http.ResponseWriter, field string, data []byte, sum int64Value) bool {
	if sum.set && sum.v != crc32c(data) {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf("The checksum "+
			"in field %s_crc32c did not match the data in field %s.", field, field))
		return false
	}
	return true
}

func (s *Server) encrypt(w http.ResponseWriter, r *http.Request, name string, ck *cryptoKey,
	flip bool) {
	var req struct {
		Name                              string     `json:"name"`
		Plaintext                         []byte     `json:"plaintext"`
		AdditionalAuthenticatedData       []byte     `json:"additionalAuthenticatedData"`
		PlaintextCrc32c                   int64Value `json:"plaintextCrc32c"`
		AdditionalAuthenticatedDataCrc32c int64Value `json:"additionalAuthenticatedDataCrc32c"`
	}
	if !s.decodeRequest(w, r, "encrypt", &req) {
		return
	}
	switch {
	case len(req.Plaintext) == 0:
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Plaintext is required.")
		return
	case len(req.Plaintext) > maxPlaintext || len(req.AdditionalAuthenticatedData) > maxPlaintext:
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "The request is too large.")
		return
	case !checkCRC(w, "plaintext", req.Plaintext, req.PlaintextCrc32c),
		!checkCRC(w, "additional_authenticated_data", req.AdditionalAuthenticatedData,
			req.AdditionalAuthenticatedDataCrc32c):
		return
	}
	v := ck.versions[ck.primary-1]
	versionName := fmt.Sprintf("%s/cryptoKeyVersions/%d", name, ck.primary)
	if v.state != Enabled {
		writeError(w, http.StatusBadRequest, "FAILED_PRECONDITION", fmt.Sprintf("%s is not "+
			"enabled, current state is: %s.", versionName, v.state))
		return
	}
	ct := make([]byte, ciphertextVersionBytes+12, ciphertextVersionBytes+12+
		len(req.Plaintext)+16)
	binary.BigEndian.PutUint32(ct, uint32(ck.primary))
	if _, err := rand.Read(ct[ciphertextVersionBytes:]); err != nil {
		writeError(w, http.StatusInternalServerError, "INTERNAL", "Internal error.")
		return
	}
	ct = v.aead.Seal(ct, ct[ciphertextVersionBytes:], req.Plaintext,
		req.AdditionalAuthenticatedData)
	sum := crc32c(ct)
	if flip {
		ct[len(ct)-1] ^= 1
	}
	writeJSON(w, map[string]any{
		"name":                    versionName,
		"ciphertext":              ct,
		"ciphertextCrc32c":        strconv.FormatInt(sum, 10),
		"verifiedPlaintextCrc32c": req.PlaintextCrc32c.set,
		"verifiedAdditionalAuthenticatedDataCrc32c": req.AdditionalAuthenticatedDataCrc32c.set,
		"protectionLevel": "SOFTWARE",
	})
}

func (s *Server) decrypt(w http.ResponseWriter, r *http.Request, name string, ck *cryptoKey,
	flip bool) {
	var req struct {
		Name                              string     `json:"name"`
		Ciphertext                        []byte     `json:"ciphertext"`
		AdditionalAuthenticatedData       []byte     `json:"additionalAuthenticatedData"`
		CiphertextCrc32c                  int64Value `json:"ciphertextCrc32c"`
		AdditionalAuthenticatedDataCrc32c int64Value `json:"additionalAuthenticatedDataCrc32c"`
	}
	if !s.decodeRequest(w, r, "decrypt", &req) {
		return
	}
	if !checkCRC(w, "ciphertext", req.Ciphertext, req.CiphertextCrc32c) ||
		!checkCRC(w, "additional_authenticated_data", req.AdditionalAuthenticatedData,
			req.AdditionalAuthenticatedDataCrc32c) {
		return
	}
	if len(req.Ciphertext) >= ciphertextVersionBytes {
		n := int(binary.BigEndian.Uint32(req.Ciphertext))
		if n >= 1 && n <= len(ck.versions) && ck.versions[n-1].state != Enabled {
			writeError(w, http.StatusBadRequest, "FAILED_PRECONDITION", fmt.Sprintf("%s/"+
				"cryptoKeyVersions/%d is not enabled, current state is: %s.", name, n,
				ck.versions[n-1].state))
			return
		}
	}
	n, pt, ok := ck.open(req.Ciphertext, req.AdditionalAuthenticatedData)
	if !ok {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT",
			"Decryption failed: the ciphertext is invalid.")
		return
	}
	sum := crc32c(pt)
	if flip {
		pt[0] ^= 1
	}
	writeJSON(w, map[string]any{
		"plaintext":       pt,
		"plaintextCrc32c": strconv.FormatInt(sum, 10),
		"usedPrimary":     n == ck.primary,
		"protectionLevel": "SOFTWARE",
	})
}

// open decrypts a ciphertext of one of the key's enabled versions.
func (ck *cryptoKey) open(ct, aad []byte) (int, []byte, bool) {
	if len(ct) < ciphertextVersionBytes+12+16 {
		return 0, nil, false
	}
	n := int(binary.BigEndian.Uint32(ct))
	if n < 1 || n > len(ck.versions) || ck.versions[n-1].state != Enabled {
		return 0, nil, false
	}
	nonce := ct[ciphertextVersionBytes : ciphertextVersionBytes+12]
	pt, err := ck.versions[n-1].aead.Open(nil, nonce, ct[ciphertextVersionBytes+12:], aad)
	return n, pt, err == nil
}

// token answers the JWT bearer grant of a service account (RFC 7523): the
// assertion must be an RS256 JWT signed by the key of WriteCredentials,
// issued by the service account, for this token endpoint.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests["token"]++
	oauthError := func(desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant",
			"error_description": desc})
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != jwtBearerGrant {
		oauthError("Invalid grant_type.")
		return
	}
	parts := strings.Split(r.PostForm.Get("assertion"), ".")
	if len(parts) != 3 || s.saKey == nil {
		oauthError("Invalid JWT.")
		return
	}
	sig, err1 := base64.RawURLEncoding.DecodeString(parts[2])
	claimsJSON, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err1 != nil || err2 != nil ||
		rsa.VerifyPKCS1v15(s.saKey, crypto.SHA256, digest[:], sig) != nil {
		oauthError("Invalid JWT Signature.")
		return
	}
	var claims struct {
		Iss   string `json:"iss"`
		Aud   string `json:"aud"`
		Scope string `json:"scope"`
		Exp   int64  `json:"exp"`
	}
	if json.Unmarshal(claimsJSON, &claims) != nil || claims.Iss != serviceAccountEmail ||
		claims.Aud != "http://"+r.Host+"/token" || claims.Exp < time.Now().Unix() ||
		!strings.Contains(claims.Scope, "https://www.googleapis.com/auth/cloudkms") &&
			!strings.Contains(claims.Scope, "https://www.googleapis.com/auth/cloud-platform") {
		oauthError("Invalid JWT claims.")
		return
	}
	tok := make([]byte, 24)
	_, _ = rand.Read(tok)
	t := "ya29.coffer-test-" + base64.RawURLEncoding.EncodeToString(tok)
	s.tokens[t] = true
	writeJSON(w, map[string]any{"access_token": t, "token_type": "Bearer", "expires_in": 3599})
}

// writeError answers with a google.rpc.Status JSON body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(map[string]any{"error": map[string]any{
		"code": status, "message": msg, "status": code}})
	_, _ = w.Write(b.Bytes())
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(v)
}

func titleCase(s string) string { return strings.ToUpper(s[:1]) + s[1:] }
