package dpapi

import (
	"context"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

func init() {
	masterkey.Register(masterkey.Kind{
		Scheme:    Scheme,
		Name:      Scheme,
		Form:      Form,
		Canonical: Canonical,
		Enroll:    enroll,
		Open:      open,
	})
}

// description is stored, unencrypted, in each DPAPI blob.
const description = "coffer ring"

// Master is a keys.Master that seals with DPAPI. It holds no key material;
// it is safe for concurrent use.
type Master struct {
	scope Scope
}

var _ keys.Master = (*Master)(nil)

// New returns the Master for scope s.
func New(s Scope) (*Master, error) {
	if s != Machine && s != User {
		return nil, fmt.Errorf("dpapi: unknown scope %d", int(s))
	}
	return &Master{scope: s}, nil
}

func (m *Master) flags() uint32 {
	f := uint32(windows.CRYPTPROTECT_UI_FORBIDDEN)
	if m.scope == Machine {
		f |= windows.CRYPTPROTECT_LOCAL_MACHINE
	}
	return f
}

// Seal protects plaintext with DPAPI, entropy bound to associatedData.
func (m *Master) Seal(_ context.Context, plaintext, associatedData []byte) ([]byte, error) {
	if len(plaintext) == 0 {
		return nil, errors.New("dpapi: nothing to seal")
	}
	head := header(m.scope)
	ent := entropy(associatedData, head)
	name, err := windows.UTF16PtrFromString(description)
	if err != nil {
		return nil, err
	}
	var out windows.DataBlob
	err = windows.CryptProtectData(blob(plaintext), name, blob(ent), 0, nil, m.flags(), &out)
	if err != nil {
		return nil, fmt.Errorf("failed to seal ring with DPAPI (%s): %w", m.scope, err)
	}
	defer free(&out, false)
	return append(head, unsafe.Slice(out.Data, out.Size)...), nil
}

// Unseal opens a copy from Seal. Any DPAPI failure to open it (another
// account or computer, another volume or master ID, an altered copy)
// returns an error wrapping keys.ErrWrongKey.
func (m *Master) Unseal(_ context.Context, sealed, associatedData []byte) ([]byte, error) {
	b, err := parseSealed(sealed, m.scope)
	if err != nil {
		return nil, err
	}
	ent := entropy(associatedData, sealed[:headerSize])
	var out windows.DataBlob
	err = windows.CryptUnprotectData(blob(b), nil, blob(ent), 0, nil, m.flags(), &out)
	if err != nil {
		return nil, fmt.Errorf("%w: DPAPI (%s) refused the sealed ring: it was sealed on "+
			"another computer or account, for another volume or master ID, or altered: %w",
			keys.ErrWrongKey, m.scope, err)
	}
	defer free(&out, true)
	return append([]byte(nil), unsafe.Slice(out.Data, out.Size)...), nil
}

// blob points a DataBlob at b, which must not be empty.
func blob(b []byte) *windows.DataBlob {
	return &windows.DataBlob{Size: uint32(len(b)), Data: &b[0]}
}

// free releases a DataBlob that DPAPI allocated, zeroing it first when it
// holds plaintext.
func free(b *windows.DataBlob, wipe bool) {
	if b.Data == nil {
		return
	}
	if wipe {
		clear(unsafe.Slice(b.Data, b.Size))
	}
	_, _ = windows.LocalFree(windows.Handle(unsafe.Pointer(b.Data)))
	b.Data = nil
}

func enroll(_ context.Context, ref masterkey.Ref, _ masterkey.Options) (keys.Enrollment,
	error) {
	s, err := ParseURI(ref.URI)
	if err != nil {
		return keys.Enrollment{}, err
	}
	m, err := New(s)
	if err != nil {
		return keys.Enrollment{}, err
	}
	return keys.Enrollment{Kind: Scheme, URI: s.URI(), Master: m}, nil
}

func open(_ context.Context, entry keys.MasterEntry, _ masterkey.Options) (keys.Master, error) {
	s, err := ParseURI(entry.URI)
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", entry.ID, err)
	}
	return New(s)
}
