package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/cofferfs/coffer/keys"
)

// checkNotSpecial refuses a path that exists and is not a regular file: a
// named pipe would block the open until a reader comes (forever, for a
// background mount), and a socket, device or directory is no log. It looks
// with lstat, which opens nothing. flag names the option in the error; a
// missing file is fine.
func checkNotSpecial(flag, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to inspect %s %s: %w", flag, path, err)
	}
	if fi.Mode().IsRegular() {
		return nil
	}
	return withHints(fmt.Errorf("%s %s is %s, not a regular file", flag, path, keys.FileKind(fi.Mode())),
		"choose a regular file, or a new path in an existing directory")
}
