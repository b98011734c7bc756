package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/cofferfs/coffer/keys"
)

// ErrLogNotUsed reports that the log named in a volume's audit settings was
// not used, and why. The settings live in the backing directory and are not
// authenticated: whoever can write there could otherwise make the commands
// create or append to a file of their choice.
var ErrLogNotUsed = errors.New("configured audit log not used")

// openConfigured opens the log that the settings of the volume vol in
// backing name, for appending, only if it is a log this user started for
// vol: an existing regular file, not a symbolic link, outside backing and
// the folders in exclude, owned by the effective user, whose first record
// is of vol. It never creates a file. The error says why it was refused.
//
// A log coffer renamed away (logrotate's copy FILE.1 of FILE) passes all
// that, and would take every record out of the log the administrator
// follows: so the last record in it that names the log it was written to
// (init, audit-config) must name path. A log with no such record (older
// than that detail) is taken as before.
func openConfigured(path, backing string, vol keys.VolumeID, exclude []string) (*os.File, error) {
	if dir := insideOf(path, append([]string{backing}, exclude...)); dir != "" {
		return nil, fmt.Errorf("%w: it lies inside %s", ErrLogNotUsed, dir)
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: it does not exist (renamed away by log rotation?)",
			ErrLogNotUsed)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrLogNotUsed, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%w: it is %s", ErrLogNotUsed, keys.FileKind(fi.Mode()))
	}

	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|oNoFollow|oNonBlock, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLogNotUsed, err)
	}
	if err := checkOpened(f, fi, vol); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkOpened checks the file opened for a configured log: still the
// regular file that was inspected, owned by this user, started for vol.
func checkOpened(f *os.File, before fs.FileInfo, vol keys.VolumeID) error {
	fi, err := f.Stat()
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", ErrLogNotUsed, err)
	case !fi.Mode().IsRegular() || !os.SameFile(fi, before):
		return fmt.Errorf("%w: it was replaced while being opened", ErrLogNotUsed)
	case fi.Size() == 0:
		return fmt.Errorf("%w: it is empty, and a log coffer started holds a record",
			ErrLogNotUsed)
	}
	if err := checkOwner(fi); err != nil {
		return fmt.Errorf("%w: %w", ErrLogNotUsed, err)
	}
	got, err := firstVolume(f)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrLogNotUsed, err)
	}
	if got != vol {
		return fmt.Errorf("%w: its first record is of volume %s", ErrLogNotUsed, got)
	}
	if named := namedLog(f); named != "" && named != clip(f.Name(), maxDetailLen) {
		return fmt.Errorf("%w: its records were written to %s (a copy renamed by log "+
			"rotation?)", ErrLogNotUsed, named)
	}
	return nil
}

// namedLog returns the log path that the last init or audit-config record
// in r names in its "log" detail, or "" if none does. Only the owner of the
// file could have written those records.
func namedLog(r io.ReaderAt) string {
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, math.MaxInt64), maxLine+1)
	var named string
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Not a line coffer wrote: skip to the end of it.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			line = nil
		}
		if bytes.Contains(line, []byte(`"log":`)) {
			var rec struct {
				Event  EventType         `json:"event"`
				Detail map[string]string `json:"detail"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Detail["log"] != "" &&
				(rec.Event == EventInit || rec.Event == EventAuditConfig) {
				named = rec.Detail["log"]
			}
		}
		if err != nil {
			return named
		}
	}
}

// firstVolume returns the volume of the first record in r.
func firstVolume(r io.ReaderAt) (keys.VolumeID, error) {
	sr := io.NewSectionReader(r, 0, maxLine+1)
	first, err := bufio.NewReaderSize(sr, maxLine+1).ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return keys.VolumeID{}, errors.New("it does not start with an audit record")
	}
	var rec struct {
		Seq    uint64        `json:"seq"`
		Volume keys.VolumeID `json:"volume"`
		Prev   string        `json:"prev"`
	}
	if json.Unmarshal(first, &rec) != nil || rec.Seq == 0 || rec.Prev == "" {
		return keys.VolumeID{}, errors.New("its first line is not an audit record")
	}
	return rec.Volume, nil
}

// insideOf returns the first of dirs that path lies in, comparing both as
// given and with symbolic links resolved, or "".
func insideOf(path string, dirs []string) string {
	paths := []string{filepath.Clean(path)}
	if d, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
		paths = append(paths, filepath.Join(d, filepath.Base(path)))
	}
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			continue
		}
		cands := []string{abs}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			cands = append(cands, real)
		}
		for _, p := range paths {
			for _, d := range cands {
				if p == d || strings.HasPrefix(p, strings.TrimSuffix(d, string(filepath.Separator))+
					string(filepath.Separator)) {
					return dir
				}
			}
		}
	}
	return ""
}

// Where returns the audit log that commands on the volume vol in backing
// write to: the log named in its settings if OpenVolume would use it (see
// Options.Exclude), else the default log. notUsed, when not nil, says why a
// configured log is not used (it wraps ErrLogNotUsed).
func Where(backing string, vol keys.VolumeID, exclude []string) (path string, notUsed, err error) {
	s, err := ReadSettings(backing)
	if err != nil {
		return "", nil, err
	}
	if s.Log != "" {
		f, err := openConfigured(s.Log, backing, vol, exclude)
		if err == nil {
			f.Close()
			return s.Log, nil, nil
		}
		notUsed = err
	}
	path, err = DefaultPath(vol)
	return path, notUsed, err
}
