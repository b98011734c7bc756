//go:build linux

package tpm2

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/box"
	"github.com/cofferfs/coffer/keys/masterkey"
)

func init() {
	masterkey.Register(masterkey.Kind{
		Scheme:    Scheme,
		Name:      Scheme,
		Form:      "tpm2:[?pcrs=N,N[&bank=sha256]]",
		Canonical: canonical,
		Enroll:    enroll,
		Open:      open,
	})
}

// ErrPCRChanged reports PCR values that differ from those the master key
// was sealed to. PCRError wraps it.
var ErrPCRChanged = errors.New("PCR values changed since enrollment")

// PCRError reports a PCR policy the TPM will not satisfy: the machine booted
// something else (firmware, boot loader, Secure Boot state) than when the
// master key was enrolled.
type PCRError struct {
	Bank    string
	Changed []uint // PCRs whose value differs; empty when only the TPM knows
	Reason  string // set when Changed is empty
}

// Error names the PCRs and what the user can do.
func (e *PCRError) Error() string {
	what := e.Reason
	if len(e.Changed) > 0 {
		what = "changed: " + policy{PCRs: e.Changed, Bank: e.Bank}.describe()
	}
	return fmt.Sprintf("%v (%s); the TPM will not unseal it: unlock the volume with another "+
		"master key or a recovery key", ErrPCRChanged, what)
}

// Unwrap returns ErrPCRChanged.
func (e *PCRError) Unwrap() error { return ErrPCRChanged }

// Hint tells the user how to recover.
func (e *PCRError) Hint() string {
	return "after an intended change (firmware or boot loader update), unlock with another " +
		"master key and enroll the tpm2 key again"
}

// describe returns "sha256 PCR 0, 7".
func (p policy) describe() string {
	s := make([]string, len(p.PCRs))
	for i, n := range p.PCRs {
		s[i] = strconv.FormatUint(uint64(n), 10)
	}
	return p.Bank + " PCR " + strings.Join(s, ", ")
}

// hexBytes is a byte string written in hex in the params, so that PCR
// values and names read like tpm2_pcrread output.
type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

func (h *hexBytes) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	*h = d
	return err
}

// params is what the master entry records: the sealed object and what is
// needed to explain a failure to unseal it.
type params struct {
	Version   int        `json:"version"`
	SRKName   hexBytes   `json:"srk_name"`
	Public    []byte     `json:"public"`
	Private   []byte     `json:"private"`
	PCRValues []hexBytes `json:"pcr_values,omitempty"`
}

const (
	paramsVersion = 1
	maxBlob       = 4096
)

// parseParams decodes and checks params against the URI's policy.
func parseParams(raw json.RawMessage, p policy) (*params, error) {
	var pr params
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pr); err != nil {
		return nil, fmt.Errorf("%w: tpm2 params: %v", keys.ErrMalformed, err)
	}
	switch {
	case pr.Version != paramsVersion:
		return nil, fmt.Errorf("%w: tpm2 params version %d", keys.ErrUnsupportedVersion,
			pr.Version)
	case len(pr.SRKName) == 0 || len(pr.SRKName) > 128:
		return nil, fmt.Errorf("%w: tpm2 params: bad srk_name", keys.ErrMalformed)
	case len(pr.Public) == 0 || len(pr.Public) > maxBlob ||
		len(pr.Private) == 0 || len(pr.Private) > maxBlob:
		return nil, fmt.Errorf("%w: tpm2 params: bad sealed object size", keys.ErrMalformed)
	case len(pr.PCRValues) != len(p.PCRs):
		return nil, fmt.Errorf("%w: tpm2 params hold %d PCR values for %d PCRs",
			keys.ErrMalformed, len(pr.PCRValues), len(p.PCRs))
	}
	return &pr, nil
}

// master is a keys.Master that unseals its KEK from the TPM for each Seal
// and Unseal.
type master struct {
	mu     sync.Mutex // the transports are not safe for concurrent use
	device string
	policy policy
	params *params
}

var _ keys.Master = (*master)(nil)

func enroll(ctx context.Context, ref masterkey.Ref, opts masterkey.Options) (keys.Enrollment,
	error) {
	p, err := parseURI(ref.URI)
	if err != nil {
		return keys.Enrollment{}, err
	}
	if err := ctx.Err(); err != nil {
		return keys.Enrollment{}, err
	}
	t, err := openDevice(opts.TPMDevice)
	if err != nil {
		return keys.Enrollment{}, err
	}
	defer t.Close()

	pr, err := seal(t, p)
	if err != nil {
		return keys.Enrollment{}, err
	}
	raw, err := json.Marshal(pr)
	if err != nil {
		return keys.Enrollment{}, fmt.Errorf("failed to encode tpm2 params: %w", err)
	}
	m := &master{device: opts.TPMDevice, policy: p, params: pr}
	return keys.Enrollment{Kind: Scheme, URI: p.uri(), Params: raw, Master: m}, nil
}

// seal seals a new random KEK in the TPM, bound to p's PCRs as they are now.
func seal(t transport.TPM, p policy) (*params, error) {
	s, err := createSRK(t)
	if err != nil {
		return nil, err
	}
	defer flush(t, s.handle)

	pr := &params{Version: paramsVersion, SRKName: s.name.Buffer}
	var authPolicy []byte
	if len(p.PCRs) > 0 {
		values, err := readPCRs(t, p)
		if err != nil {
			return nil, err
		}
		for _, v := range values {
			pr.PCRValues = append(pr.PCRValues, v)
		}
		if authPolicy, err = policyDigest(p, values); err != nil {
			return nil, err
		}
	}

	kek, err := keys.RandomSecret(KEKSize)
	if err != nil {
		return nil, err
	}
	defer kek.Wipe()
	obj, err := sealKEK(t, s, kek, authPolicy)
	if err != nil {
		return nil, err
	}
	pr.Public, pr.Private = obj.Public, obj.Private
	return pr, nil
}

func open(_ context.Context, entry keys.MasterEntry, opts masterkey.Options) (keys.Master,
	error) {
	p, err := parseURI(entry.URI)
	if err != nil {
		return nil, err
	}
	pr, err := parseParams(entry.Params, p)
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", entry.ID, err)
	}
	return &master{device: opts.TPMDevice, policy: p, params: pr}, nil
}

// kek unseals the KEK from the TPM.
func (m *master) kek(ctx context.Context) (*keys.Secret, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := openDevice(m.device)
	if err != nil {
		return nil, err
	}
	defer t.Close()

	s, err := createSRK(t)
	if err != nil {
		return nil, err
	}
	defer flush(t, s.handle)
	if !bytes.Equal(s.name.Buffer, m.params.SRKName) {
		return nil, fmt.Errorf("%w (or this TPM was cleared since): its storage key differs; "+
			"use the TPM that enrolled it, or another master key", ErrOtherTPM)
	}
	if err := m.checkPCRs(t); err != nil {
		return nil, err
	}
	obj := sealedObject{Public: m.params.Public, Private: m.params.Private}
	return unsealKEK(t, s, obj, m.policy.selection())
}

// checkPCRs compares the PCRs with their values at enrollment, so that a
// mismatch names the PCRs that changed. The TPM enforces the policy anyway.
func (m *master) checkPCRs(t transport.TPM) error {
	if len(m.policy.PCRs) == 0 {
		return nil
	}
	values, err := readPCRs(t, m.policy)
	if err != nil {
		return err
	}
	var changed []uint
	for i, v := range values {
		if !bytes.Equal(v, m.params.PCRValues[i]) {
			changed = append(changed, m.policy.PCRs[i])
		}
	}
	if len(changed) > 0 {
		return &PCRError{Bank: m.policy.Bank, Changed: changed}
	}
	return nil
}

// Seal seals plaintext with the KEK, bound to associatedData.
func (m *master) Seal(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	b, err := m.box(ctx)
	if err != nil {
		return nil, err
	}
	defer b.Wipe()
	return b.Seal(ctx, plaintext, associatedData)
}

// Unseal opens a ring sealed by Seal. It returns an error wrapping
// keys.ErrWrongKey when the TPM rejects the sealed object or the ring fails
// authentication.
func (m *master) Unseal(ctx context.Context, sealed, associatedData []byte) ([]byte, error) {
	b, err := m.box(ctx)
	if err != nil {
		return nil, err
	}
	defer b.Wipe()
	return b.Unseal(ctx, sealed, associatedData)
}

// box unseals the KEK and wraps it in a box.Master, which the caller wipes.
func (m *master) box(ctx context.Context) (*box.Master, error) {
	kek, err := m.kek(ctx)
	if err != nil {
		return nil, fmt.Errorf("tpm2 master key: %w", err)
	}
	b, err := box.New(kek)
	if err != nil {
		kek.Wipe()
		return nil, err
	}
	return b, nil
}
