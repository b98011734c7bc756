package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/cofferfs/coffer/keys"
)

// staleAck says why the mount record a of backing, written on this host,
// names no running coffer mount of it, or "" if it may: a record from
// another host, or one that cannot be checked, counts as live. A record is
// stale when its process is gone, or when its PID now belongs to another
// process (PID reuse, after a reboot say): the boot ID and start time in
// the record differ from the process's, or, in a record without them, the
// process's command line does not name the backing directory.
func staleAck(a keys.Ack, backing, host string) string {
	if a.Host != host || a.PID <= 0 {
		return ""
	}
	if syscall.Kill(a.PID, 0) == syscall.ESRCH {
		return fmt.Sprintf("process %d is gone", a.PID)
	}
	if a.StartTime != 0 {
		boot, start, ok := keys.ProcessStart(a.PID)
		switch {
		case !ok:
			return ""
		case boot != a.BootID:
			return fmt.Sprintf("it was written before the last reboot (pid %d is another process now)", a.PID)
		case start != a.StartTime:
			return fmt.Sprintf("pid %d is another process now (its start time differs)", a.PID)
		}
		return ""
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", a.PID))
	if err != nil || len(cmdline) == 0 {
		return "" // not ours to read (another user), or a kernel thread
	}
	names := []string{backing}
	if abs, err := filepath.Abs(backing); err == nil {
		names = append(names, abs, resolveDir(abs))
	}
	for _, arg := range bytes.Split(cmdline, []byte{0}) {
		if slices.Contains(names, string(arg)) {
			return ""
		}
	}
	return fmt.Sprintf("pid %d is another process now (its command line does not name %s)",
		a.PID, backing)
}
