//go:build linux

package systemdcreds

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/box"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// Scheme is the URI scheme and the kind recorded in the config.
const Scheme = "systemd-creds"

// KEKSize is the size of the key that systemd-creds encrypts.
const KEKSize = 32

// Errors callers and tests tell apart.
var (
	// ErrNoTPM reports a TPM-bound credential on a machine without a TPM.
	ErrNoTPM = errors.New("no TPM")
	// ErrNoBinary reports that the systemd-creds program is missing.
	ErrNoBinary = errors.New("systemd-creds is not installed")
)

// program is the binary run, found in PATH (tests put a wrapper first).
const program = "systemd-creds"

// tpmDevice is where systemd-creds looks for a TPM.
const tpmDevice = "/dev/tpmrm0"

// timeout bounds one run of systemd-creds (a TPM can be slow, not minutes).
const timeout = time.Minute

// withKeys are the --with-key values a URI may name.
var withKeys = map[string]bool{"host": true, "tpm2": true, "host+tpm2": true}

// adPrefix starts the associated data coffer passes to Seal and Unseal.
const adPrefix = "coffer-ring-v1\x00"

const (
	version       = 1
	headerSize    = 3
	maxCredential = 16 << 10
)

func init() {
	masterkey.Register(masterkey.Kind{
		Scheme:    Scheme,
		Name:      Scheme,
		Form:      "systemd-creds:host|tpm2|host+tpm2",
		Canonical: canonical,
		Enroll:    enroll,
		Open:      open,
	})
}

// canonical checks a systemd-creds: URI and returns it in lower case.
func canonical(uri string) (string, error) {
	_, err := withKey(uri)
	if err != nil {
		return "", err
	}
	return strings.ToLower(uri), nil
}

// withKey returns the --with-key value of uri.
func withKey(uri string) (string, error) {
	rest, ok := strings.CutPrefix(strings.ToLower(uri), Scheme+":")
	if !ok || !withKeys[rest] {
		return "", fmt.Errorf("%w: %q: want systemd-creds:host, systemd-creds:tpm2 or "+
			"systemd-creds:host+tpm2", masterkey.ErrMalformed, uri)
	}
	return rest, nil
}

// master seals with a new KEK each time and unseals through systemd-creds.
type master struct {
	withKey string
	// opened is the sealing-key type (the first 16 bytes of the
	// credential: host, TPM2 or both) of the last copy Unseal opened;
	// nil before.
	opened []byte
}

// ErrKeyTypeChanged reports a seal whose key type differs from that of the
// copy the same master key opened: the URI in volume.json was edited (say
// from systemd-creds:host+tpm2 to systemd-creds:host), which would move
// the ring to a weaker key at the next rotation.
var ErrKeyTypeChanged = errors.New("systemd-creds key type differs from the sealed copy's")

// credType returns the sealing-key type of a credential: the ID at the
// start of its decoded form. systemd-creds prints credentials in base64.
func credType(cred []byte) ([]byte, error) {
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(cred)))
	n, err := base64.StdEncoding.Decode(raw, bytes.TrimSpace(cred))
	if err != nil || n < credTypeSize {
		return nil, fmt.Errorf("%w: systemd-creds credential is not base64 with a header",
			keys.ErrWrongKey)
	}
	return raw[:credTypeSize], nil
}

// credTypeSize is the size of the key-type ID that starts a credential.
const credTypeSize = 16

var _ keys.Master = (*master)(nil)

func enroll(_ context.Context, ref masterkey.Ref, _ masterkey.Options) (keys.Enrollment,
	error) {
	m, err := newMaster(ref.URI)
	if err != nil {
		return keys.Enrollment{}, err
	}
	return keys.Enrollment{Kind: Scheme, URI: ref.URI, Master: m}, nil
}

func open(_ context.Context, entry keys.MasterEntry, _ masterkey.Options) (keys.Master, error) {
	if len(entry.Params) != 0 && string(entry.Params) != "null" {
		return nil, fmt.Errorf("%w: master key %s: systemd-creds takes no params",
			keys.ErrMalformed, entry.ID)
	}
	return newMaster(entry.URI)
}

// newMaster checks that systemd-creds and, when the key needs one, a TPM
// are present.
func newMaster(uri string) (*master, error) {
	k, err := withKey(uri)
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(program); err != nil {
		return nil, fmt.Errorf("%w (it comes with systemd 250 or later): %w", ErrNoBinary, err)
	}
	if strings.Contains(k, "tpm2") {
		if _, err := os.Stat(tpmDevice); err != nil {
			return nil, fmt.Errorf("%w: systemd-creds:%s needs a TPM 2.0 and this machine has "+
				"none (%s is missing); use systemd-creds:host or another master key",
				ErrNoTPM, k, tpmDevice)
		}
	}
	return &master{withKey: k}, nil
}

// credentialName returns coffer-VOLUMEID-MASTERID from the associated data.
func credentialName(ad []byte) (string, error) {
	rest, ok := bytes.CutPrefix(ad, []byte(adPrefix))
	if !ok || len(rest) <= 16 || len(rest) > 16+64 {
		return "", fmt.Errorf("systemd-creds master key: unexpected associated data layout")
	}
	id := rest[16:]
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_') {
			return "", fmt.Errorf("systemd-creds master key: master ID %q is not a credential "+
				"name", id)
		}
	}
	return "coffer-" + hex.EncodeToString(rest[:16]) + "-" + string(id), nil
}

// Seal draws a KEK, has systemd-creds encrypt it and seals plaintext with
// it, bound to associatedData.
func (m *master) Seal(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	name, err := credentialName(associatedData)
	if err != nil {
		return nil, err
	}
	kek, err := keys.RandomSecret(KEKSize)
	if err != nil {
		return nil, err
	}
	b, err := box.New(kek)
	if err != nil {
		kek.Wipe()
		return nil, err
	}
	defer b.Wipe()

	cred, err := m.encrypt(ctx, name, kek)
	if err != nil {
		return nil, err
	}
	if len(cred) > maxCredential {
		return nil, fmt.Errorf("systemd-creds wrote a %d-byte credential, more than %d",
			len(cred), maxCredential)
	}
	if m.opened != nil {
		typ, err := credType(cred)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(typ, m.opened) {
			return nil, fmt.Errorf("%w: the ring was sealed with another key type than "+
				"systemd-creds:%s names now; if you meant to change it, replace the master "+
				"key (coffer rotate --master OLD=NEWURI), else someone edited volume.json",
				ErrKeyTypeChanged, m.withKey)
		}
	}
	out := make([]byte, headerSize, headerSize+len(cred)+box.Overhead+len(plaintext))
	out[0] = version
	binary.BigEndian.PutUint16(out[1:], uint16(len(cred)))
	out = append(out, cred...)
	sealed, err := b.Seal(ctx, plaintext, associatedData)
	if err != nil {
		return nil, err
	}
	return append(out, sealed...), nil
}

// Unseal has systemd-creds decrypt the KEK and opens the ring with it. A
// credential systemd-creds refuses (altered, from another machine or for
// another volume or master) and a ring that fails authentication are
// reported as keys.ErrWrongKey.
func (m *master) Unseal(ctx context.Context, sealed, associatedData []byte) ([]byte, error) {
	name, err := credentialName(associatedData)
	if err != nil {
		return nil, err
	}
	cred, ring, err := split(sealed)
	if err != nil {
		return nil, err
	}
	typ, err := credType(cred)
	if err != nil {
		return nil, err
	}
	kek, err := m.decrypt(ctx, name, cred)
	if err != nil {
		return nil, err
	}
	b, err := box.New(kek)
	if err != nil {
		kek.Wipe()
		return nil, err
	}
	defer b.Wipe()
	plain, err := b.Unseal(ctx, ring, associatedData)
	if err == nil {
		m.opened = typ
	}
	return plain, err
}

// split returns the credential and the sealed ring of a sealed copy.
func split(sealed []byte) (cred, ring []byte, err error) {
	if len(sealed) < headerSize || sealed[0] != version {
		return nil, nil, fmt.Errorf("%w: sealed ring is not a systemd-creds version %d copy",
			keys.ErrWrongKey, version)
	}
	n := int(binary.BigEndian.Uint16(sealed[1:]))
	if n == 0 || len(sealed) < headerSize+n+box.Overhead {
		return nil, nil, fmt.Errorf("%w: sealed ring is truncated", keys.ErrWrongKey)
	}
	return sealed[headerSize : headerSize+n], sealed[headerSize+n:], nil
}

// encrypt runs systemd-creds encrypt with the KEK on its standard input and
// returns the credential it writes.
func (m *master) encrypt(ctx context.Context, name string, kek *keys.Secret) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, program, "encrypt", "--with-key="+m.withKey,
		"--name="+name, "-", "-")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("failed to run systemd-creds: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoBinary, err)
	}
	// Written straight from the Secret's memory into the pipe, no copy.
	_, werr := stdin.Write(kek.InsecureBytes())
	cerr := stdin.Close()
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("systemd-creds encrypt --with-key=%s failed: %s: %w",
			m.withKey, lastLine(stderr.String()), err)
	}
	if err := errors.Join(werr, cerr); err != nil {
		return nil, fmt.Errorf("failed to pass the key to systemd-creds: %w", err)
	}
	return bytes.TrimSpace(stdout.Bytes()), nil
}

// decrypt runs systemd-creds decrypt with the credential on its standard
// input and reads the KEK from its standard output into a Secret.
func (m *master) decrypt(ctx context.Context, name string, cred []byte) (*keys.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, program, "decrypt", "--name="+name, "-", "-")
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stderr = bytes.NewReader(cred), &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("failed to run systemd-creds: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoBinary, err)
	}

	kek := keys.NewSecret(KEKSize)
	_, rerr := io.ReadFull(stdout, kek.InsecureBytes())
	var extra [1]byte
	n, _ := io.ReadFull(stdout, extra[:])
	if err := cmd.Wait(); err != nil {
		kek.Wipe()
		return nil, fmt.Errorf("%w: systemd-creds refused the credential %s (altered, made "+
			"on another machine, or for another volume): %s: %w", keys.ErrWrongKey, name,
			lastLine(stderr.String()), err)
	}
	if rerr != nil || n != 0 {
		kek.Wipe()
		clear(extra[:])
		return nil, fmt.Errorf("%w: systemd-creds decrypted a key of the wrong size",
			keys.ErrWrongKey)
	}
	return kek, nil
}

// lastLine returns the last line of systemd-creds' diagnostics that is not
// the warning about the host secret on unencrypted media.
func lastLine(stderr string) string {
	line := "no message"
	for l := range strings.Lines(stderr) {
		l = strings.TrimSpace(l)
		if l != "" && !strings.Contains(l, "not located on encrypted media") {
			line = l
		}
	}
	return line
}
