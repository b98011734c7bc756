package dpapi

import (
	"fmt"

	"github.com/cofferfs/coffer/keys"
)

// SealVersion is the version of the sealed ring layout below.
const SealVersion = 1

// A sealed ring copy is laid out as
//
//	offset  size  field
//	0       1     version, SealVersion
//	1       1     scope: 1 machine, 2 user
//	2       n     the DPAPI blob of CryptProtectData(ring payload), with
//	              optional entropy = ring AD || bytes 0..2 above
const headerSize = 2

// header returns the two header bytes of a copy sealed with scope s.
func header(s Scope) []byte { return []byte{SealVersion, byte(s)} }

// entropy returns DPAPI's optional entropy for a copy: the ring AD, which
// names the volume and the master ID, then the header.
func entropy(ringAD, head []byte) []byte {
	return append(append(make([]byte, 0, len(ringAD)+len(head)), ringAD...), head...)
}

// parseSealed checks the header of a sealed copy against scope s and
// returns the DPAPI blob. A copy sealed with another scope is the wrong
// key.
func parseSealed(sealed []byte, s Scope) ([]byte, error) {
	if len(sealed) <= headerSize {
		return nil, fmt.Errorf("%w: sealed ring is %d bytes, too short", keys.ErrWrongKey,
			len(sealed))
	}
	if v := sealed[0]; v != SealVersion {
		return nil, fmt.Errorf("%w: dpapi sealed ring version %d (this coffer reads %d)",
			keys.ErrUnsupportedVersion, v, SealVersion)
	}
	if got := Scope(sealed[1]); got != s {
		return nil, fmt.Errorf("%w: ring sealed with DPAPI scope %s, not %s", keys.ErrWrongKey,
			got, s)
	}
	return sealed[headerSize:], nil
}
