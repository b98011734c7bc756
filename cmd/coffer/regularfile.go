package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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
	return withHints(fmt.Errorf("%s %s is %s, not a regular file", flag, path, fileKind(fi.Mode())),
		"choose a regular file, or a new path in an existing directory")
}

// fileKind names the type of a file mode for an error message.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m.IsDir():
		return "a directory"
	default:
		return "a special file"
	}
}
