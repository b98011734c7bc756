//go:build linux

package tpm2

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/cofferfs/coffer/keys"
)

// KEKSize is the size of the sealed key-encryption key.
const KEKSize = 32

// ErrOtherTPM reports a master key sealed by another TPM, or by this TPM
// before its owner hierarchy was cleared.
var ErrOtherTPM = errors.New("master key was sealed by another TPM")

// sessionAES is the key size of the parameter-encryption sessions.
const sessionAES = 128

// srk is the storage root key made for one operation.
type srk struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	public tpm2.TPMTPublic
}

// createSRK makes the ECC P-256 storage root key from the standard
// template. The TPM derives it from its owner seed, so it is the same key
// every time on the same TPM. The caller flushes it.
func createSRK(t transport.TPM) (*srk, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t)
	if errors.Is(err, tpm2.TPMRCBadAuth) || errors.Is(err, tpm2.TPMRCAuthFail) {
		return nil, fmt.Errorf("failed to create the TPM storage key: the owner hierarchy has "+
			"a password, which coffer does not support: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to create the TPM storage key: %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush(t, rsp.ObjectHandle)
		return nil, fmt.Errorf("failed to parse the TPM storage key: %w", err)
	}
	return &srk{handle: rsp.ObjectHandle, name: rsp.Name, public: *pub}, nil
}

// flush unloads a transient object; errors are ignored, as a resource
// manager flushes on close anyway and nothing secret stays in the object.
func flush(t transport.TPM, h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t)
}

// salted returns an HMAC session salted with the SRK that encrypts the
// first command or response parameter (dir), so that secrets cross the bus
// encrypted.
func (s *srk) salted(dir tpm2.AuthOption) tpm2.Session {
	return tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Salted(s.handle, s.public), dir)
}

// sealedObject is a sealed KEK as the TPM returns it.
type sealedObject struct {
	Public  []byte // TPMT_PUBLIC
	Private []byte // TPM2B_PRIVATE contents, encrypted by the TPM
}

// sealKEK seals kek under s, with authPolicy when it is not empty (the
// object can then be unsealed only through that policy) and with empty
// authorisation otherwise.
func sealKEK(t transport.TPM, s *srk, kek *keys.Secret, authPolicy []byte) (sealedObject, error) {
	attrs := tpm2.TPMAObject{FixedTPM: true, FixedParent: true, NoDA: true}
	attrs.UserWithAuth = len(authPolicy) == 0
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{
			Handle: s.handle, Name: s.name,
			Auth: s.salted(tpm2.AESEncryption(sessionAES, tpm2.EncryptIn)),
		},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{
				Buffer: kek.InsecureBytes()}),
		}},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgKeyedHash,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			AuthPolicy:       tpm2.TPM2BDigest{Buffer: authPolicy},
		}),
	}.Execute(t)
	if err != nil {
		return sealedObject{}, fmt.Errorf("failed to seal the key in the TPM: %w", err)
	}
	return sealedObject{Public: rsp.OutPublic.Bytes(), Private: rsp.OutPrivate.Buffer}, nil
}

// unsealKEK loads obj under s and unseals it. With sel it satisfies the
// PCR policy in the session first. A blob the TPM rejects (altered, or from
// another TPM) is reported as keys.ErrWrongKey.
func unsealKEK(t transport.TPM, s *srk, obj sealedObject, sel *tpm2.TPMLPCRSelection) (
	*keys.Secret, error) {
	load, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: s.handle, Name: s.name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: obj.Private},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](obj.Public),
	}.Execute(t)
	if refused(err) {
		return nil, fmt.Errorf("%w: the TPM refused the sealed key (altered, or sealed by "+
			"another TPM): %w", keys.ErrWrongKey, err)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to load the sealed key into the TPM: %w", err)
	}
	defer flush(t, load.ObjectHandle)

	auth := s.salted(tpm2.AESEncryption(sessionAES, tpm2.EncryptOut))
	if sel != nil {
		auth = tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, h tpm2.TPMISHPolicy,
			_ tpm2.TPM2BNonce) error {
			_, err := tpm2.PolicyPCR{PolicySession: h, Pcrs: *sel}.Execute(t)
			return err
		}, tpm2.Salted(s.handle, s.public), tpm2.AESEncryption(sessionAES, tpm2.EncryptOut))
	}
	rsp, err := tpm2.Unseal{
		ItemHandle: tpm2.AuthHandle{Handle: load.ObjectHandle, Name: load.Name, Auth: auth},
	}.Execute(t)
	if errors.Is(err, tpm2.TPMRCPolicyFail) {
		return nil, &PCRError{Reason: "the TPM refused the PCR policy"}
	}
	if err != nil {
		return nil, fmt.Errorf("failed to unseal the key in the TPM: %w", err)
	}
	if len(rsp.OutData.Buffer) != KEKSize {
		clear(rsp.OutData.Buffer)
		return nil, fmt.Errorf("%w: the TPM unsealed %d bytes, want %d", keys.ErrWrongKey,
			len(rsp.OutData.Buffer), KEKSize)
	}
	return keys.SecretFromBytes(rsp.OutData.Buffer), nil
}

// refused reports whether err is the TPM rejecting the command's input,
// as opposed to a warning (out of memory, retry, ...) or a transport
// failure, which say nothing about the sealed key.
func refused(err error) bool {
	var rc tpm2.TPMRC
	return errors.As(err, &rc) && !rc.IsWarning()
}

// selection returns the TPM PCR selection of p, nil when p has no PCRs.
func (p policy) selection() *tpm2.TPMLPCRSelection {
	if len(p.PCRs) == 0 {
		return nil
	}
	return &tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      banks[p.Bank],
		PCRSelect: tpm2.PCClientCompatible.PCRs(p.PCRs...),
	}}}
}

// readPCRs returns the values of p's PCRs, in p.PCRs order.
func readPCRs(t transport.TPM, p policy) ([][]byte, error) {
	values := make([][]byte, len(p.PCRs))
	for i, n := range p.PCRs {
		one := policy{PCRs: []uint{n}, Bank: p.Bank}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: *one.selection()}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("failed to read PCR %d: %w", n, err)
		}
		if len(rsp.PCRValues.Digests) != 1 {
			return nil, fmt.Errorf("failed to read PCR %d: the TPM has no %s PCR bank "+
				"(try bank=sha1 or another bank it allocates)", n, p.Bank)
		}
		values[i] = rsp.PCRValues.Digests[0].Buffer
	}
	return values, nil
}

// policyDigest returns the PolicyPCR policy digest (SHA-256) for p with
// the given PCR values.
func policyDigest(p policy, values [][]byte) ([]byte, error) {
	h := sha256.New()
	for _, v := range values {
		h.Write(v)
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, fmt.Errorf("failed to compute the PCR policy: %w", err)
	}
	cmd := tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)}, Pcrs: *p.selection()}
	if err := cmd.Update(calc); err != nil {
		return nil, fmt.Errorf("failed to compute the PCR policy: %w", err)
	}
	return calc.Hash().Digest, nil
}
