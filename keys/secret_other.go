//go:build !linux

package keys

// allocPages returns nil: on this platform secrets live in ordinary Go
// memory and are not locked against swapping.
func allocPages(int) (pages []byte, locked bool) { return nil, false }

// releasePages has nothing to undo on this platform.
func releasePages([]byte, bool) {}
