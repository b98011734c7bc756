package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/cofferfs/coffer/keys"
)

// ErrNotAuditLog reports a file that coffer will not append audit records
// to: not a regular file, or one with content that is not the audit log of
// the volume.
var ErrNotAuditLog = errors.New("not an audit log of this volume")

// CheckLog checks that path can take the audit records of volume vol
// without harming anything: it does not exist yet, or it is an empty
// regular file, or a regular file whose first and last records are of vol;
// an existing file must be owned by the effective user.
// It never creates or changes path. Commands run it before they change
// where the log is or act on keys, so that a typo cannot append JSON to an
// unrelated file and a log of another volume is refused up front.
func CheckLog(path string, vol keys.VolumeID) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("failed to inspect audit log %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: %s is %s", ErrNotAuditLog, path, keys.FileKind(fi.Mode()))
	}
	if err := checkOwner(fi); err != nil {
		return fmt.Errorf("audit log %s is not usable: %w", path, err)
	}
	switch {
	case fi.Size() == 0:
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("failed to open audit log %s: %w", path, err)
	}
	defer f.Close()

	first, err := bufio.NewReaderSize(io.LimitReader(f, maxLine+1), maxLine+1).ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s does not start with an audit record", ErrNotAuditLog, path)
	}
	var r struct {
		Seq    uint64        `json:"seq"`
		Volume keys.VolumeID `json:"volume"`
		Prev   string        `json:"prev"`
	}
	if json.Unmarshal(first, &r) != nil || r.Seq == 0 || r.Prev == "" {
		return fmt.Errorf("%w: %s holds other data (its first line is not an audit record)",
			ErrNotAuditLog, path)
	}
	if r.Volume != vol {
		return fmt.Errorf("%w: %s is the audit log of volume %s, not of %s", ErrNotAuditLog,
			path, r.Volume, vol)
	}

	n := min(fi.Size(), 4*maxLine)
	buf := make([]byte, n, n+1)
	if _, err := f.ReadAt(buf, fi.Size()-n); err != nil {
		return fmt.Errorf("failed to read audit log %s: %w", path, err)
	}
	if buf[len(buf)-1] != '\n' {
		buf = append(buf, '\n')
	}
	l := &Log{path: path, vol: vol}
	if _, err := l.lastRecord(buf, n == fi.Size()); err != nil {
		return fmt.Errorf("%w: %w", ErrNotAuditLog, err)
	}
	return nil
}
