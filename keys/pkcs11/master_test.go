//go:build cgo && unix

package pkcs11

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	p11 "github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// openTest opens the master at uri and wipes it when the test ends.
func openTest(t *testing.T, uri string, opts masterkey.Options) *Master {
	t.Helper()
	m, err := Open(context.Background(), uri, opts)
	require.NoError(t, err)
	t.Cleanup(m.Wipe)
	return m
}

func TestCreateSealUnseal(t *testing.T) {
	ctx := context.Background()
	h := newSoftHSM(t)
	h.InitToken(t, "coffer")
	uri := "pkcs11:token=coffer;object=master?pin-source=file:" + h.PINFile

	require.NoError(t, Create(ctx, uri, masterkey.Options{}))
	err := Create(ctx, uri, masterkey.Options{})
	require.ErrorIs(t, err, ErrKeyExists)
	assert.Contains(t, err.Error(), `already holds an object labelled "master"`)

	m := openTest(t, uri, masterkey.Options{})
	ad := []byte("coffer-ring-v1\x00volume-id-16-bytes-m1")
	payload := []byte("ring payload: keys and generation")
	sealed, err := m.Seal(ctx, payload, ad)
	require.NoError(t, err)
	require.Len(t, sealed, 1+ivSize+len(payload)+tagSize)
	assert.Equal(t, byte(1), sealed[0])
	assert.False(t, bytes.Contains(sealed, payload), "the payload must not appear in the clear")

	got, err := m.Unseal(ctx, sealed, ad)
	require.NoError(t, err)
	assert.Equal(t, payload, got)

	again, err := m.Seal(ctx, payload, ad)
	require.NoError(t, err)
	assert.NotEqual(t, sealed[1:1+ivSize], again[1:1+ivSize], "each seal draws a new IV")

	// The key lives in the token store: after the module is finalised, a
	// new Open finds it and unseals the earlier copy.
	m.Wipe()
	m2 := openTest(t, uri, masterkey.Options{})
	got, err = m2.Unseal(ctx, sealed, ad)
	require.NoError(t, err)
	assert.Equal(t, payload, got)
}

func TestUnsealRefusesAlteredCopies(t *testing.T) {
	ctx := context.Background()
	h := newSoftHSM(t)
	h.InitToken(t, "coffer")
	uri := "pkcs11:token=coffer;object=master?pin-source=file:" + h.PINFile
	other := "pkcs11:token=coffer;object=other?pin-source=file:" + h.PINFile
	require.NoError(t, Create(ctx, uri, masterkey.Options{}))
	require.NoError(t, Create(ctx, other, masterkey.Options{}))
	m := openTest(t, uri, masterkey.Options{})

	ad := []byte("coffer-ring-v1\x00volume-A-------m1")
	sealed, err := m.Seal(ctx, []byte("ring"), ad)
	require.NoError(t, err)

	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name   string
		sealed []byte
		ad     []byte
	}{
		{name: "IV", sealed: flip(1), ad: ad},
		{name: "ciphertext", sealed: flip(1 + ivSize), ad: ad},
		{name: "tag", sealed: flip(len(sealed) - 1), ad: ad},
		{name: "truncated", sealed: sealed[:len(sealed)-1], ad: ad},
		{name: "too short", sealed: sealed[:1+ivSize+tagSize-1], ad: ad},
		{name: "version zero", sealed: append([]byte{0}, sealed[1:]...), ad: ad},
		{name: "empty", sealed: nil, ad: ad},
		{name: "other volume", sealed: sealed, ad: []byte("coffer-ring-v1\x00volume-B-------m1")},
		{name: "other master entry", sealed: sealed, ad: []byte("coffer-ring-v1\x00volume-A-------m2")},
		{name: "no associated data", sealed: sealed, ad: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Unseal(ctx, tt.sealed, tt.ad)
			assert.ErrorIs(t, err, keys.ErrWrongKey)
		})
	}

	_, err = m.Unseal(ctx, append([]byte{2}, sealed[1:]...), ad)
	assert.ErrorIs(t, err, keys.ErrUnsupportedVersion)

	// Another key of the same token cannot open the copy.
	mo := openTest(t, other, masterkey.Options{})
	_, err = mo.Unseal(ctx, sealed, ad)
	assert.ErrorIs(t, err, keys.ErrWrongKey)
	assert.Contains(t, err.Error(), `key "other" on token "coffer"`)

	// The session still works after failed decryptions.
	got, err := m.Unseal(ctx, sealed, ad)
	require.NoError(t, err)
	assert.Equal(t, []byte("ring"), got)
}

// TestSealLayoutMatchesGCM checks the sealed layout against Go's own
// AES-GCM: a session key with known bytes seals through the token and Go
// opens the result, and the other way round.
func TestSealLayoutMatchesGCM(t *testing.T) {
	ctx := context.Background()
	h := newSoftHSM(t)
	h.InitToken(t, "coffer")
	uri := "pkcs11:token=coffer;object=master?pin-source=file:" + h.PINFile
	require.NoError(t, Create(ctx, uri, masterkey.Options{}))
	m := openTest(t, uri, masterkey.Options{})

	raw := make([]byte, 32)
	_, err := rand.Read(raw)
	require.NoError(t, err)
	known, err := m.s.mod.ctx.CreateObject(m.s.sh, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_TOKEN, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, true),
		p11.NewAttribute(p11.CKA_DECRYPT, true),
		p11.NewAttribute(p11.CKA_VALUE, raw),
	})
	require.NoError(t, err)
	km := &Master{s: m.s, key: known} // shares m's session; never wiped itself

	block, err := aes.NewCipher(raw)
	require.NoError(t, err)
	gcm, err := cipher.NewGCM(block)
	require.NoError(t, err)

	ad := []byte("associated")
	sealed, err := km.Seal(ctx, []byte("payload"), ad)
	require.NoError(t, err)
	pt, err := gcm.Open(nil, sealed[1:1+ivSize], sealed[1+ivSize:], ad)
	require.NoError(t, err, "Go's AES-GCM must open what the token sealed")
	assert.Equal(t, "payload", string(pt))

	iv := make([]byte, ivSize)
	_, err = rand.Read(iv)
	require.NoError(t, err)
	mine := append(append([]byte{1}, iv...), gcm.Seal(nil, iv, []byte("from go"), ad)...)
	pt, err = km.Unseal(ctx, mine, ad)
	require.NoError(t, err)
	assert.Equal(t, "from go", string(pt))
}

// TestKeyNeverLeavesToken reads the created key's attributes back through
// the API and through OpenSC's pkcs11-tool.
func TestKeyNeverLeavesToken(t *testing.T) {
	ctx := context.Background()
	h := newSoftHSM(t)
	h.InitToken(t, "coffer")
	uri := "pkcs11:token=coffer;object=master;id=%C0%FF?pin-source=file:" + h.PINFile
	require.NoError(t, Create(ctx, uri, masterkey.Options{}))
	m := openTest(t, uri, masterkey.Options{})

	attrs, err := m.s.mod.ctx.GetAttributeValue(m.s.sh, m.key, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_SENSITIVE, nil),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, nil),
		p11.NewAttribute(p11.CKA_ALWAYS_SENSITIVE, nil),
		p11.NewAttribute(p11.CKA_NEVER_EXTRACTABLE, nil),
		p11.NewAttribute(p11.CKA_TOKEN, nil),
		p11.NewAttribute(p11.CKA_PRIVATE, nil),
		p11.NewAttribute(p11.CKA_ID, nil),
	})
	require.NoError(t, err)
	want := map[uint][]byte{
		p11.CKA_SENSITIVE: {1}, p11.CKA_EXTRACTABLE: {0}, p11.CKA_ALWAYS_SENSITIVE: {1},
		p11.CKA_NEVER_EXTRACTABLE: {1}, p11.CKA_TOKEN: {1}, p11.CKA_PRIVATE: {1},
		p11.CKA_ID: {0xc0, 0xff},
	}
	for _, a := range attrs {
		assert.Equal(t, want[a.Type], a.Value, "attribute 0x%x", a.Type)
	}
	_, err = m.s.mod.ctx.GetAttributeValue(m.s.sh, m.key,
		[]*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
	assert.True(t, isRV(err, p11.CKR_ATTRIBUTE_SENSITIVE), "reading the key's value: %v", err)

	tool, err := exec.LookPath("pkcs11-tool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pkcs11-tool (opensc) is missing: run scripts/deps.sh")
		}
		t.Skip("pkcs11-tool (opensc) is missing")
	}
	out := runTool(t, tool, "--module", DefaultModule, "--token-label", "coffer",
		"--login", "--pin", testPIN, "--list-objects", "--type", "secrkey")
	assert.Contains(t, out, "master")
	assert.Contains(t, out, "AES length 32")
	assert.Contains(t, out, "never extractable")
	assert.Contains(t, out, "always sensitive")
}

func TestOpenFailures(t *testing.T) {
	ctx := context.Background()
	h := newSoftHSM(t)
	h.InitToken(t, "coffer")
	h.InitToken(t, "spare")
	src := "?pin-source=file:" + h.PINFile
	require.NoError(t, Create(ctx, "pkcs11:token=coffer;object=master;id=%01"+src,
		masterkey.Options{}))

	wrongPIN := filepath.Join(t.TempDir(), "wrong")
	require.NoError(t, os.WriteFile(wrongPIN, []byte("000000"), 0o600))
	notLib := filepath.Join(t.TempDir(), "lib.so")
	require.NoError(t, os.WriteFile(notLib, []byte("not a library"), 0o600))

	tests := []struct {
		name    string
		uri     string
		opts    masterkey.Options
		wantErr error
		msg     string
	}{
		{name: "wrong PIN", uri: "pkcs11:token=coffer;object=master", wantErr: ErrWrongPIN,
			opts: masterkey.Options{PINFile: wrongPIN}, msg: `wrong PIN for token "coffer"`},
		{name: "no PIN source", uri: "pkcs11:token=coffer;object=master", wantErr: ErrNoPIN,
			msg: "pass --pin-file FILE"},
		{name: "unknown token", uri: "pkcs11:token=nope;object=master" + src, wantErr: ErrNoToken,
			msg: `no token labelled "nope" matches the URI (tokens: "coffer", "spare")`},
		{name: "unknown object", uri: "pkcs11:token=coffer;object=nope" + src, wantErr: ErrNoKey,
			msg: `token "coffer" has no secret key labelled "nope"`},
		{name: "other id", uri: "pkcs11:token=coffer;object=master;id=%02" + src, wantErr: ErrNoKey,
			msg: "with the URI's id"},
		{name: "key on another token", uri: "pkcs11:token=spare;object=master" + src,
			wantErr: ErrNoKey},
		{name: "other serial", uri: "pkcs11:token=coffer;serial=nope;object=master" + src,
			wantErr: ErrNoToken},
		{name: "missing module", uri: "pkcs11:token=coffer;object=master?module-path=/nonexistent.so",
			wantErr: ErrModule, msg: "install it, or set module-path"},
		{name: "not a library", uri: "pkcs11:token=coffer;object=master?module-path=" + notLib,
			wantErr: ErrModule, msg: "not a loadable PKCS#11 library"},
		{name: "group-readable PIN file", uri: "pkcs11:token=coffer;object=master",
			opts: masterkey.Options{PINFile: h.Conf + ".pin"}, msg: "group or others can access it"},
	}
	require.NoError(t, os.WriteFile(h.Conf+".pin", []byte(testPIN), 0o644))
	require.NoError(t, os.Chmod(h.Conf+".pin", 0o644))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Open(ctx, tt.uri, tt.opts)
			require.Error(t, err)
			assert.Nil(t, m)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
			}
			assert.Contains(t, err.Error(), tt.msg)
			assert.NotContains(t, err.Error(), testPIN)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
	modules.Lock()
	defer modules.Unlock()
	assert.Empty(t, modules.m, "failed opens must release the module")
}

func TestPINSources(t *testing.T) {
	ctx := context.Background()
	h := newSoftHSM(t)
	h.InitToken(t, "coffer")
	uri := "pkcs11:token=coffer;object=master"
	require.NoError(t, Create(ctx, uri, masterkey.Options{PINFile: h.PINFile}))

	wrongPIN := filepath.Join(t.TempDir(), "wrong")
	require.NoError(t, os.WriteFile(wrongPIN, []byte("000000"), 0o600))

	// The URI's pin-source wins over --pin-file.
	openTest(t, uri+"?pin-source=file:"+h.PINFile, masterkey.Options{PINFile: wrongPIN}).Wipe()

	// Without either, the PIN function is asked, with the token's label.
	var asked []string
	ask := func(_ context.Context, req masterkey.PINRequest) (*keys.Secret, error) {
		asked = append(asked, req.Token+" "+req.URI)
		return keys.SecretFromBytes([]byte(testPIN)), nil
	}
	openTest(t, uri, masterkey.Options{PIN: ask}).Wipe()
	assert.Equal(t, []string{"coffer pkcs11:token=coffer;object=master?module-path=" +
		DefaultModule}, asked)

	// --pin-file wins over the PIN function.
	openTest(t, uri, masterkey.Options{PINFile: h.PINFile, PIN: ask}).Wipe()
	assert.Len(t, asked, 1)

	// A pin-source inside the backing directory is never read, even
	// through a link, so a PIN planted there cannot lock the token.
	backing := t.TempDir()
	planted := filepath.Join(backing, "pin")
	require.NoError(t, os.WriteFile(planted, []byte(testPIN), 0o600))
	link := filepath.Join(t.TempDir(), "pin")
	require.NoError(t, os.Symlink(planted, link))
	for _, p := range []string{planted, link} {
		_, err := Open(ctx, uri+"?pin-source=file:"+p, masterkey.Options{Backing: backing})
		require.ErrorIs(t, err, ErrPINInBacking)
		assert.Contains(t, err.Error(), p)
	}
	openTest(t, uri+"?pin-source=file:"+h.PINFile, masterkey.Options{Backing: backing}).Wipe()
}

func TestRefusesExtractableKey(t *testing.T) {
	ctx := context.Background()
	h := newSoftHSM(t)
	h.InitToken(t, "coffer")
	src := "?pin-source=file:" + h.PINFile
	require.NoError(t, Create(ctx, "pkcs11:token=coffer;object=master"+src, masterkey.Options{}))
	m := openTest(t, "pkcs11:token=coffer;object=master"+src, masterkey.Options{})

	// A session key beside it, extractable: the same search must refuse it.
	_, err := m.s.mod.ctx.CreateObject(m.s.sh, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_TOKEN, false),
		p11.NewAttribute(p11.CKA_LABEL, "loose"),
		p11.NewAttribute(p11.CKA_ENCRYPT, true),
		p11.NewAttribute(p11.CKA_DECRYPT, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
		p11.NewAttribute(p11.CKA_VALUE, make([]byte, 32)),
	})
	require.NoError(t, err)
	_, err = Open(ctx, "pkcs11:token=coffer;object=loose"+src, masterkey.Options{})
	require.ErrorIs(t, err, ErrUnsafeKey)
	assert.Contains(t, err.Error(), "can be read out of the token")
}

func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	h := newSoftHSM(t)
	h.InitToken(t, "coffer")
	uri := "pkcs11:token=coffer;object=master?pin-source=file:" + h.PINFile
	require.NoError(t, Create(ctx, uri, masterkey.Options{}))
	m := openTest(t, uri, masterkey.Options{})
	// A second master on the same token logs in again: the token answers
	// CKR_USER_ALREADY_LOGGED_IN, which must be accepted.
	m2 := openTest(t, uri, masterkey.Options{})

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mm := m
			if i%2 == 1 {
				mm = m2
			}
			msg := []byte(strings.Repeat("x", i))
			sealed, err := mm.Seal(ctx, msg, []byte{byte(i)})
			if err == nil {
				var got []byte
				got, err = m.Unseal(ctx, sealed, []byte{byte(i)})
				if err == nil && !bytes.Equal(got, msg) {
					err = assert.AnError
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}

	m.Wipe()
	_, err := m.Seal(ctx, []byte("x"), nil)
	assert.ErrorIs(t, err, errClosed)
	_, err = m2.Seal(ctx, []byte("after the other master closed"), nil)
	assert.NoError(t, err, "closing one master must not log the other out")
}

// TestThroughMasterkey uses the kind as coffer does: parsed, created,
// enrolled and opened through the masterkey registry, with keys.Init and
// keys.Unlock on a real backing directory.
func TestThroughMasterkey(t *testing.T) {
	ctx := context.Background()
	h := newSoftHSM(t)
	h.InitToken(t, "coffer")

	ref, err := masterkey.Parse("PKCS11:object=app;token=coffer")
	require.NoError(t, err)
	assert.Equal(t, masterkey.Ref{Kind: Kind,
		URI: "pkcs11:token=coffer;object=app?module-path=" + DefaultModule}, ref)
	_, err = masterkey.Parse("pkcs11:token=coffer;object=app?pin-value=" + testPIN)
	require.ErrorIs(t, err, masterkey.ErrMalformed)
	assert.NotContains(t, err.Error(), testPIN)

	opts := masterkey.Options{PINFile: h.PINFile}
	msg, err := masterkey.Create(ctx, ref.URI, opts)
	require.NoError(t, err)
	assert.Equal(t, `created AES-256 key "app" in token "coffer" (sensitive, never extractable)`, msg)

	e, err := masterkey.Enroll(ctx, ref.URI, opts)
	require.NoError(t, err)
	backing := t.TempDir()
	cfg, ring, err := keys.Init(ctx, backing, []keys.Enrollment{e}, keys.InitOptions{})
	e.Master.(*Master).Wipe()
	require.NoError(t, err)
	assert.Equal(t, Kind, cfg.Masters[0].Kind)
	assert.Equal(t, ref.URI, cfg.Masters[0].URI)

	cfg, err = keys.ReadConfig(backing)
	require.NoError(t, err)
	got, _, err := keys.Unlock(ctx, cfg, masterkey.Opener(ctx, opts), keys.UnlockOptions{})
	require.NoError(t, err)
	assert.Equal(t, ring.Primary().ID, got.Primary().ID)
	modules.Lock()
	defer modules.Unlock()
	assert.Empty(t, modules.m, "Unlock must wipe the master, which releases the module")
}
