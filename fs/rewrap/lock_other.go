//go:build unix && !linux

package rewrap

// lockHeader is a no-op: shared mounts exist on Linux only.
func lockHeader(int) error {
	return nil
}
