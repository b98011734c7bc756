//go:build cgo && unix

package pkcs11

import (
	"context"
	"fmt"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

func init() {
	masterkey.Register(masterkey.Kind{
		Scheme:    Scheme,
		Name:      Kind,
		Form:      "pkcs11:token=LABEL;object=LABEL",
		Canonical: Canonical,
		Create:    create,
		Enroll:    enroll,
		Open:      open,
	})
}

func create(ctx context.Context, ref masterkey.Ref, opts masterkey.Options) (string, error) {
	if err := Create(ctx, ref.URI, opts); err != nil {
		return "", err
	}
	u, err := ParseURI(ref.URI)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("created AES-256 key %q in token %q (sensitive, never extractable)",
		u.Object, u.Token), nil
}

func enroll(ctx context.Context, ref masterkey.Ref, opts masterkey.Options) (keys.Enrollment,
	error) {
	m, err := Open(ctx, ref.URI, opts)
	if err != nil {
		return keys.Enrollment{}, err
	}
	return keys.Enrollment{Kind: Kind, URI: ref.URI, Master: m}, nil
}

func open(ctx context.Context, e keys.MasterEntry, opts masterkey.Options) (keys.Master, error) {
	m, err := Open(ctx, e.URI, opts)
	if err != nil {
		return nil, err // keys.Unlock names the master entry
	}
	return m, nil
}
