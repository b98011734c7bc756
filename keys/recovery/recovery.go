// Package recovery implements recovery keys: an X25519 key pair whose
// public half is a volume's master key of kind "recovery" and whose private
// half is printed for a person to keep offline (package text.go describes
// the printed form, with a check character per group).
//
// The ring is sealed to the public half with HPKE through Tink's hybrid
// encryption (DHKEM-X25519-HKDF-SHA256, HKDF-SHA256, AES-256-GCM, no
// output prefix), with the ring's associated data (volume ID and master ID)
// as the HPKE context info. Sealing needs only the public half, recorded in
// the config, so a rotation re-seals to a recovery key without it; only
// unsealing needs the private half.
package recovery

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tink-crypto/tink-go/v2/hybrid"
	"github.com/tink-crypto/tink-go/v2/hybrid/hpke"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
	"github.com/tink-crypto/tink-go/v2/key"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/secretdata"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cofferfs/coffer/keys"
)

// Kind is the master-key kind and URI scheme of recovery keys. Every
// recovery master has the URI "recovery:"; its public key is in the
// entry's params.
const (
	Kind = "recovery"
	URI  = "recovery:"
)

// Suite names the HPKE suite in the params.
const Suite = "DHKEM_X25519_HKDF_SHA256/HKDF_SHA256/AES_256_GCM"

const keySize = 32

// Errors of this package.
var (
	// ErrTypo reports a recovery key with a mistake in it; the error is a
	// *ChecksumError naming the group.
	ErrTypo = errors.New("recovery key is mistyped")
	// ErrNoPrivateKey reports an unseal with only the public half.
	ErrNoPrivateKey = errors.New("no recovery key given")
	// ErrOtherKey reports a recovery key that is not the one a master
	// entry records.
	ErrOtherKey = errors.New("recovery key belongs to another volume or master key")
)

// Params are the public params of a recovery master in the config.
type Params struct {
	Suite     string `json:"suite"`
	PublicKey []byte `json:"public_key"` // 32 bytes, X25519
}

// PrivateKey is the private half of a recovery key. Wipe it when done.
type PrivateKey struct {
	secret *keys.Secret
	public []byte
}

// Generate makes a new recovery key pair from Tink's HPKE key template.
func Generate() (*PrivateKey, error) {
	h, err := keyset.NewHandle(hybrid.DHKEM_X25519_HKDF_SHA256_HKDF_SHA256_AES_256_GCM_Raw_Key_Template())
	if err != nil {
		return nil, fmt.Errorf("failed to generate recovery key: %w", err)
	}
	e, err := h.Primary()
	if err != nil {
		return nil, fmt.Errorf("failed to generate recovery key: %w", err)
	}
	k, ok := e.Key().(*hpke.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("failed to generate recovery key: got %T", e.Key())
	}
	return fromBytes(k.PrivateKeyBytes().Data(insecuresecretdataaccess.Token{}))
}

// fromBytes builds a PrivateKey from a raw X25519 private key.
func fromBytes(raw []byte) (*PrivateKey, error) {
	if len(raw) != keySize {
		return nil, fmt.Errorf("recovery key must be %d bytes, got %d", keySize, len(raw))
	}
	k, err := hpkePrivate(raw)
	if err != nil {
		return nil, err
	}
	pub, err := k.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("failed to derive public recovery key: %w", err)
	}
	return &PrivateKey{
		secret: keys.SecretFromBytes(append([]byte(nil), raw...)),
		public: pub.(*hpke.PublicKey).PublicKeyBytes(),
	}, nil
}

// Parse reads a recovery key in its printed form. A typing mistake yields
// a *ChecksumError (matching ErrTypo) that names the group to check.
func Parse(text string) (*PrivateKey, error) {
	raw, err := decodeText(text)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	return fromBytes(raw)
}

// Text returns the printed form: 14 groups of 5 characters.
func (k *PrivateKey) Text() string { return encodeText(k.secret.InsecureBytes()) }

// Params returns the public params to record in the config.
func (k *PrivateKey) Params() Params {
	return Params{Suite: Suite, PublicKey: append([]byte(nil), k.public...)}
}

// Fingerprint returns a short name of the key pair: 8 characters from a
// hash of the public key, printed with the key and shown in errors.
func (k *PrivateKey) Fingerprint() string { return fingerprint(k.public) }

// Wipe zeroes the private key.
func (k *PrivateKey) Wipe() { k.secret.Wipe() }

// String never shows the key.
func (k *PrivateKey) String() string { return "recovery key " + k.Fingerprint() }

func fingerprint(pub []byte) string {
	sum := sha256.Sum256(append([]byte("coffer-recovery-fingerprint\x00"), pub...))
	return base32.StdEncoding.EncodeToString(sum[:5])
}

// EntryFingerprint returns the fingerprint (as Fingerprint prints it with
// the key) of the public key that recovery master entry m seals to, so that
// what volume.json records can be compared with the key on paper. ok is
// false for an entry of another kind or with params that do not parse.
func EntryFingerprint(m keys.MasterEntry) (fp string, ok bool) {
	if m.Kind != Kind {
		return "", false
	}
	p, err := ParseParams(m.Params)
	if err != nil {
		return "", false
	}
	return fingerprint(p.PublicKey), true
}

// ParseParams decodes and checks the params of a recovery master.
func ParseParams(raw json.RawMessage) (Params, error) {
	var p Params
	if err := json.Unmarshal(raw, &p); err != nil {
		return Params{}, fmt.Errorf("%w: recovery params: %v", keys.ErrMalformed, err)
	}
	if p.Suite != Suite || len(p.PublicKey) != keySize {
		return Params{}, fmt.Errorf("%w: recovery params want suite %s and a %d-byte public key",
			keys.ErrMalformed, Suite, keySize)
	}
	return p, nil
}

// Enrollment returns the enrollment of k as a master key: it seals with the
// public half and, for the check after sealing, unseals with k.
func (k *PrivateKey) Enrollment() (keys.Enrollment, error) {
	m, err := NewMaster(k.Params(), k)
	if err != nil {
		return keys.Enrollment{}, err
	}
	raw, err := json.Marshal(k.Params())
	if err != nil {
		return keys.Enrollment{}, fmt.Errorf("failed to encode recovery params: %w", err)
	}
	return keys.Enrollment{Kind: Kind, URI: URI, Params: raw, Master: m}, nil
}

// master seals to a public key and, if it has the private key, unseals.
type master struct {
	enc         tink.HybridEncrypt
	dec         tink.HybridDecrypt // nil without the private key
	fingerprint string
}

// NewMaster returns the master of a recovery entry with params p. priv may
// be nil: the master then seals but fails to unseal with ErrNoPrivateKey.
// A priv whose public half is not p's fails with ErrOtherKey.
func NewMaster(p Params, priv *PrivateKey) (keys.Master, error) {
	m := &master{fingerprint: fingerprint(p.PublicKey)}
	params, err := suiteParams()
	if err != nil {
		return nil, err
	}
	pub, err := hpke.NewPublicKey(p.PublicKey, 0, params)
	if err != nil {
		return nil, fmt.Errorf("%w: recovery public key: %v", keys.ErrMalformed, err)
	}
	h, err := handleOf(pub)
	if err != nil {
		return nil, err
	}
	if m.enc, err = hybrid.NewHybridEncrypt(h); err != nil {
		return nil, fmt.Errorf("failed to create recovery sealer: %w", err)
	}
	if priv == nil {
		return m, nil
	}

	if fp := priv.Fingerprint(); fp != m.fingerprint {
		return nil, fmt.Errorf("%w: the key given is %s, this master key wants %s", ErrOtherKey,
			fp, m.fingerprint)
	}
	k, err := hpkePrivate(priv.secret.InsecureBytes())
	if err != nil {
		return nil, err
	}
	if h, err = handleOf(k); err != nil {
		return nil, err
	}
	if m.dec, err = hybrid.NewHybridDecrypt(h); err != nil {
		return nil, fmt.Errorf("failed to create recovery opener: %w", err)
	}
	return m, nil
}

func suiteParams() (*hpke.Parameters, error) {
	p, err := hpke.NewParameters(hpke.ParametersOpts{KEMID: hpke.DHKEM_X25519_HKDF_SHA256,
		KDFID: hpke.HKDFSHA256, AEADID: hpke.AES256GCM, Variant: hpke.VariantNoPrefix})
	if err != nil {
		return nil, fmt.Errorf("failed to build HPKE parameters: %w", err)
	}
	return p, nil
}

func hpkePrivate(raw []byte) (*hpke.PrivateKey, error) {
	params, err := suiteParams()
	if err != nil {
		return nil, err
	}
	sd := secretdata.NewBytesFromData(append([]byte(nil), raw...), insecuresecretdataaccess.Token{})
	k, err := hpke.NewPrivateKey(sd, 0, params)
	if err != nil {
		return nil, fmt.Errorf("invalid recovery key: %w", err)
	}
	return k, nil
}

// handleOf returns a keyset handle holding k as its primary.
func handleOf(k key.Key) (*keyset.Handle, error) {
	m := keyset.NewManager()
	id, err := m.AddKey(k)
	if err == nil {
		err = m.SetPrimary(id)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to build recovery keyset: %w", err)
	}
	h, err := m.Handle()
	if err != nil {
		return nil, fmt.Errorf("failed to build recovery keyset: %w", err)
	}
	return h, nil
}

// Seal encrypts the ring payload to the public key, with associatedData as
// HPKE context info.
// SealsToPublicKey reports that anyone can seal to a recovery key: a copy
// it unseals proves nothing about its writer (keys.PublicSealer).
func (m *master) SealsToPublicKey() bool { return true }

func (m *master) Seal(_ context.Context, plaintext, associatedData []byte) ([]byte, error) {
	ct, err := m.enc.Encrypt(plaintext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("failed to seal to recovery key %s: %w", m.fingerprint, err)
	}
	return ct, nil
}

// Unseal decrypts with the private key.
func (m *master) Unseal(_ context.Context, sealed, associatedData []byte) ([]byte, error) {
	if m.dec == nil {
		return nil, fmt.Errorf("%w for recovery master %s: pass --recovery-key FILE",
			ErrNoPrivateKey, m.fingerprint)
	}
	pt, err := m.dec.Decrypt(sealed, associatedData)
	if err != nil {
		return nil, fmt.Errorf("%w: recovery key %s does not open this sealed ring copy",
			keys.ErrWrongKey, m.fingerprint)
	}
	return pt, nil
}
