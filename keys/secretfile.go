package keys

import (
	"fmt"
	"io/fs"
	"os"
)

// OpenSecretFile opens path, a file holding a secret (a key file, a PIN, a
// recovery key), for reading and checks on the opened file that it is a
// regular file. what names the file in errors ("key file"). The open does
// not block: a named pipe with no writer, which would hang the command
// before any check could run, is refused like every other non-regular file.
// Symbolic links are followed, as the target is what gets checked.
func OpenSecretFile(path, what string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|openNoBlock, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to open %s: %w", what, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("failed to inspect %s %s: %w", what, path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s %s is %s, not a regular file", what, path,
			FileKind(fi.Mode()))
	}
	return f, fi, nil
}

// FileKind describes the type of a file mode for error messages: "a
// directory", "a named pipe (FIFO)", and so on.
func FileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsRegular():
		return "a regular file"
	}
	return "a special file"
}
