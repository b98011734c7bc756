//go:build !unix

package keys

// lockConfig does nothing on this platform: concurrent changes to one
// volume's config are not serialised, and the last writer wins.
func lockConfig(string) (func(), error) { return func() {}, nil }

// LockRotation does nothing on this platform, where coffer rotate does not
// run.
func LockRotation(string) (func(), error) { return func() {}, nil }

func lockRotationShared(string) (func(), error) { return func() {}, nil }
