package main

import (
	"errors"

	cofferfs "github.com/cofferfs/coffer/fs"
	"github.com/cofferfs/coffer/keys"
)

// ringWrapper adapts a *keys.Ring to fs.KeyWrapper, whose Wrap asks for the
// associated data only once the wrapping key's ID is known.
//
// TODO: drop ringWrapper once keys.Ring implements fs.KeyWrapper itself with
// one snapshot of the ring; until then a change of primary between the two
// steps is detected here and the wrap retried.
type ringWrapper struct {
	*keys.Ring
}

var _ cofferfs.KeyWrapper = ringWrapper{}

// wrapAttempts bounds the retries when the primary changes during a wrap.
const wrapAttempts = 3

// Wrap wraps dek with the ring's primary key, binding ad(primary ID).
func (w ringWrapper) Wrap(dek []byte, ad func(keyID uint32) []byte) (uint32, []byte, error) {
	for range wrapAttempts {
		id := w.Primary().ID
		got, wrapped, err := w.Ring.Wrap(dek, ad(id))
		if err != nil {
			return 0, nil, err
		}
		if got == id {
			return id, wrapped, nil
		}
	}
	return 0, nil, errors.New("failed to wrap data key: ring primary kept changing")
}
