//go:build unix

package audit

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// oNonBlock keeps an open from waiting on a named pipe put in a log's place.
const oNonBlock = unix.O_NONBLOCK

// checkOwner refuses a file that the effective user does not own: such a
// log may have been set up by someone else to receive this user's records.
func checkOwner(fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Errorf("it is owned by uid %d, not by uid %d", st.Uid, euid)
	}
	return nil
}
