//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Limits of waiting for a mount daemon.
const (
	mountTimeout = 60 * time.Second // until the mount appears
	exitTimeout  = 30 * time.Second // until the daemon exits after the unmount
	busyTimeout  = 10 * time.Second // retrying an unmount that reports EBUSY
	pollInterval = 5 * time.Millisecond
)

// mountProc is a file system daemon serving one mount in the foreground, as a
// child of the benchmark, so that its PID (for the peak RSS) is known and its
// life is ours to end.
type mountProc struct {
	name    string // for messages
	mnt     string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the daemon has exited
	waitErr error         // valid once exited is closed
}

// startMount starts cmd, a daemon that mounts on mnt and serves in the
// foreground, with its output going to logPath, and returns once the mount
// answers. j unmounts it if the benchmark ends before stop is called.
func startMount(ctx context.Context, j *janitor, name string, cmd *exec.Cmd, mnt, logPath string) (*mountProc, error) {
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to open daemon log: %w", err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Own process group: a ^C on the terminal reaches only the benchmark,
	// which unmounts in order. Pdeathsig: a killed benchmark still makes
	// the daemons unmount.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}

	m := &mountProc{name: name, mnt: mnt, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start %s: %w", name, err)
	}
	go func() {
		m.waitErr = cmd.Wait()
		close(m.exited)
	}()
	j.addMount(m)

	if err := m.awaitMounted(ctx); err != nil {
		_ = m.stop()
		return nil, err
	}
	return m, nil
}

// awaitMounted polls the mount table until the mount shows up, then stats
// the mount point so that the kernel's INIT exchange is over.
func (m *mountProc) awaitMounted(ctx context.Context) error {
	deadline := time.Now().Add(mountTimeout)
	for {
		_, ok, err := mountAt(m.mnt)
		if err != nil {
			return err
		}
		if ok {
			var st unix.Stat_t
			if err := unix.Stat(m.mnt, &st); err != nil {
				return fmt.Errorf("failed to stat mount of %s: %w", m.name, err)
			}
			return nil
		}

		select {
		case <-m.exited:
			return fmt.Errorf("%s exited before mounting (%v)%s", m.name, m.waitErr, m.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not mount within %v%s", m.name, mountTimeout, m.logTail())
		}
	}
}

// pid returns the daemon's process ID.
func (m *mountProc) pid() int {
	return m.cmd.Process.Pid
}

// peakRSS returns the daemon's peak resident set size (VmHWM) in bytes.
func (m *mountProc) peakRSS() (int64, error) {
	return readVmHWM(fmt.Sprintf("/proc/%d/status", m.pid()))
}

// cpuTime returns the CPU time (user and system) the daemon has used.
func (m *mountProc) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.pid()))
	if err != nil {
		return 0, fmt.Errorf("failed to read CPU time: %w", err)
	}
	return parseStatCPU(string(b))
}

// clockTicks is the unit of the times in /proc/PID/stat (USER_HZ), 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// parseStatCPU returns utime+stime from the content of /proc/PID/stat.
func parseStatCPU(stat string) (time.Duration, error) {
	// The command name (field 2) may hold spaces; fields after it are
	// plain. utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("failed to parse /proc/PID/stat %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("failed to parse /proc/PID/stat %q", stat)
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("failed to parse CPU time %q: %w", s, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// readVmHWM reads the VmHWM line of a /proc/PID/status file.
func readVmHWM(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("failed to read peak RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("failed to parse VmHWM %q: %w", rest, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("failed to read peak RSS: %w", err)
	}
	return 0, fmt.Errorf("failed to read peak RSS: no VmHWM in %s", path)
}

// stop unmounts and waits for the daemon to exit, so that it can finish its
// CPU profile; it kills a daemon that does not exit and detaches a mount
// that does not go away. Safe to call more than once.
func (m *mountProc) stop() error {
	err := unmount(m.mnt)
	select {
	case <-m.exited:
		return err
	case <-time.After(exitTimeout):
	}

	_ = syscall.Kill(m.pid(), syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(exitTimeout / 3):
		_ = syscall.Kill(m.pid(), syscall.SIGKILL)
		<-m.exited
	}
	if _, mounted, _ := mountAt(m.mnt); mounted {
		_ = unix.Unmount(m.mnt, unix.MNT_DETACH)
	}
	return errors.Join(err, fmt.Errorf("%s did not exit after the unmount%s", m.name, m.logTail()))
}

// unmount unmounts a FUSE mount: with umount(2) as root, retrying while it
// is busy, else with fusermount3. A mount point that is not mounted is fine.
func unmount(mnt string) error {
	if _, mounted, err := mountAt(mnt); err != nil || !mounted {
		return err
	}
	if os.Geteuid() != 0 {
		out, err := exec.Command("fusermount3", "-u", mnt).CombinedOutput()
		if err != nil {
			return fmt.Errorf("failed to unmount %s: %v: %s", mnt, err, strings.TrimSpace(string(out)))
		}
		return nil
	}

	deadline := time.Now().Add(busyTimeout)
	for {
		err := unix.Unmount(mnt, 0)
		switch {
		case err == nil || errors.Is(err, unix.EINVAL):
			return nil
		case errors.Is(err, unix.EBUSY) && time.Now().Before(deadline):
			time.Sleep(pollInterval * 10)
		default:
			return fmt.Errorf("failed to unmount %s: %w", mnt, err)
		}
	}
}

// logTail returns the end of the daemon's log, for error messages.
func (m *mountProc) logTail() string {
	b, err := os.ReadFile(m.logPath)
	if err != nil || len(b) == 0 {
		return ""
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "; its log " + m.logPath + " ends with:\n" + strings.TrimRight(string(b), "\n")
}
