//go:build !linux

package keys

// allocLocked returns nil: on this platform secrets live on the Go heap and
// are not locked against swapping.
func allocLocked(n int) (mem []byte, locked bool) { return nil, false }

// freeLocked zeroes memory; there is no mapping to release.
func freeLocked(m lockedMem) { clear(m.mem) }
