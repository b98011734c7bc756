package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// checkLogFile resolves --log-file, if given, and refuses one that cannot
// be used: its directory must exist (coffer creates only its default log
// directory), and it must lie outside the backing directory, whose files the
// mount treats as ciphertext, and outside the mount point, which the mount
// hides. It runs before anything is created.
func (o *mountOptions) checkLogFile() error {
	if o.logFile == "" {
		return nil
	}
	real, err := resolveLogFile(o.logFile)
	if err != nil {
		return err
	}

	for _, d := range []struct{ what, dir string }{
		{"backing directory", o.backing}, {"mount point", o.mountPoint},
	} {
		if isWithin(real, resolveDir(d.dir)) {
			return withHints(usageErrorf("--log-file %s is inside the %s %s", o.logFile, d.what, d.dir),
				"choose a log file outside the backing directory and the mount point")
		}
	}
	if real != os.DevNull {
		if err := checkNotSpecial("--log-file", real); err != nil {
			return err
		}
	}
	if err := checkLogContent(real); err != nil {
		return err
	}
	o.logFile = real
	return nil
}

// cliPrefix starts every line the command prints for a person.
const cliPrefix = "coffer: "

// checkLogContent refuses an existing file that is not empty and does not
// start like a JSON-lines log, so that a typo (as root, naming a system
// file) does not append log lines to it. /dev/null, which a service may log
// to, is left alone; checkLogFile refuses other non-regular files.
func checkLogContent(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // a new file; a file that cannot be read fails at open
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
		return nil
	}
	// A coffer log starts with a JSON event, or with a line the command
	// printed before it switched to JSON ("coffer: warning: ...").
	first := make([]byte, len(cliPrefix))
	if n, _ := io.ReadFull(f, first); n > 0 &&
		(first[0] == '{' || string(first[:n]) == cliPrefix) {
		return nil
	}
	return withHints(usageErrorf("--log-file %s holds something else than a coffer log "+
		"(it does not start with a JSON line)", path),
		"choose a new file, an empty one, or an earlier coffer mount log")
}

// resolveLogFile returns path with symbolic links resolved in its directory
// and, if it is one, in the file itself. A missing directory is an error.
func resolveLogFile(path string) (string, error) {
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if errors.Is(err, fs.ErrNotExist) {
		return "", withHints(fmt.Errorf("directory of log file %s does not exist", path),
			"create it first, or choose another --log-file")
	}
	if err != nil {
		return "", fmt.Errorf("failed to resolve log file %s: %w", path, err)
	}
	real := filepath.Join(dir, filepath.Base(path))
	fi, err := os.Lstat(real)
	if err != nil || fi.Mode().Type() != fs.ModeSymlink {
		return real, nil
	}
	// Opening a dangling link would create its target, wherever it is.
	target, err := filepath.EvalSymlinks(real)
	if err != nil {
		return "", withHints(fmt.Errorf("log file %s is a symbolic link to a missing file", path),
			"point --log-file at a regular file or a directory that exists")
	}
	return target, nil
}

// resolveDir returns dir with symbolic links resolved, or dir itself when it
// cannot be resolved (a missing directory is reported by its own check).
func resolveDir(dir string) string {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		return real
	}
	return dir
}

// isWithin reports whether path is dir or lies under it; both are absolute
// and clean.
func isWithin(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// openLogFile opens path for appending, creating the file (0600) but never
// its directory.
// A named pipe put there since checkLogFile is refused, not waited for.
func openLogFile(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to open log file: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("failed to open log file: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG && path != os.DevNull {
		unix.Close(fd)
		return nil, withHints(fmt.Errorf("log file %s is not a regular file", path),
			"choose a regular file, or a new path in an existing directory")
	}
	// Blocking again, so that writes wait rather than fail.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_APPEND); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("failed to open log file: %w", err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// makeDefaultLogDir creates the directory of the default log file, 0700.
func makeDefaultLogDir(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("failed to create log directory: %w", err)
	}
	return nil
}
