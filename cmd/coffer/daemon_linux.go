package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/keys"
)

// The detached mount process gets two extra files from its parent:
//
//	fd 3  the write end of the ready pipe: one JSON readyMessage, then close
//	fd 4  the read end of the secret pipe, only when a passphrase was read:
//	      the passphrase bytes, then EOF
//
// so that the parent can prompt on the terminal, never puts the passphrase in
// argv or the environment, and exits only once the mount answers or failed.
const (
	childReadyFD  = 3
	childSecretFD = 4
)

// readyMessage is what the mount process reports to its parent.
type readyMessage struct {
	OK    bool     `json:"ok"`
	Error string   `json:"error,omitempty"`
	Hints []string `json:"hints,omitempty"`
}

// notifier is the mount process's end of the ready pipe. The zero value
// (foreground mount without a parent) reports nothing.
type notifier struct {
	f *os.File
}

// openNotifier wraps the inherited ready pipe fd, or returns a no-op notifier
// for fd < 0.
func openNotifier(fd int) notifier {
	if fd < 0 {
		return notifier{}
	}
	return notifier{f: os.NewFile(uintptr(fd), "ready-pipe")}
}

// ready tells the parent that the mount answers, then closes the pipe.
func (n notifier) ready() {
	n.send(readyMessage{OK: true})
}

// failed reports err to the parent, then closes the pipe.
func (n notifier) failed(err error) {
	n.send(readyMessage{Error: oneLine(err.Error()), Hints: hintsOf(err)})
}

func (n notifier) send(m readyMessage) {
	if n.f == nil {
		return
	}
	_ = json.NewEncoder(n.f).Encode(m)
	_ = n.f.Close()
}

// startDetached re-executes coffer as the mount process in a new session and
// waits for its report. args are the child's arguments (after the program
// name); secret, if not nil, is handed over on the secret pipe and wiped.
func startDetached(ctx context.Context, args []string, secret *keys.Secret, logWhere string) error {
	defer secret.Wipe()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("failed to find the coffer executable: %w", err)
	}

	readyR, readyW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("failed to create pipe: %w", err)
	}
	defer readyR.Close()
	secretR, secretW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return fmt.Errorf("failed to create pipe: %w", err)
	}

	// Only fds 0-2 and the two pipes may reach the mount process, which
	// lives on: the caller's own inherited fds would be held open by it.
	if err := closeOnExecFrom(3); err != nil {
		readyW.Close()
		secretR.Close()
		secretW.Close()
		return err
	}
	cmd := exec.Command(exe, args...)
	cmd.ExtraFiles = []*os.File{readyW, secretR}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	secretR.Close()
	if err != nil {
		secretW.Close()
		return fmt.Errorf("failed to start the mount process: %w", err)
	}

	if _, err := secretW.Write(secret.InsecureBytes()); err != nil {
		secretW.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("failed to pass the passphrase to the mount process: %w", err)
	}
	secretW.Close()
	return awaitChild(ctx, cmd, readyR, logWhere)
}

// awaitChild reads the child's report. On success the child is left running;
// on failure it is reaped and its error returned. An interrupt of the parent
// stops the child, which unmounts if it got that far.
func awaitChild(ctx context.Context, cmd *exec.Cmd, readyR io.Reader, logWhere string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	type report struct {
		msg readyMessage
		err error // the pipe closed without a message: the child died
	}
	got := make(chan report, 1)
	go func() {
		var r report
		r.err = json.NewDecoder(readyR).Decode(&r.msg)
		got <- r
	}()

	var r report
	select {
	case r = <-got:
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		return errors.New("interrupted: mount process stopped")
	}

	if r.err == nil && r.msg.OK {
		return cmd.Process.Release()
	}
	waitErr := cmd.Wait()
	if r.err != nil {
		return withHints(fmt.Errorf("mount process exited before the mount was ready: %v", waitErr),
			"see its log: "+logWhere)
	}
	return withHints(errors.New(r.msg.Error), r.msg.Hints...)
}

// closeOnExecFrom marks every open fd from first up close-on-exec, so that
// a child started by exec gets only the files handed to it explicitly.
// Files Go opens are close-on-exec already; this catches those this process
// inherited from its caller.
func closeOnExecFrom(first int) error {
	err := unix.CloseRange(uint(first), math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	// Kernels before 5.11 lack the flag: walk /proc/self/fd instead.
	names, err := readDirNames("/proc/self/fd", -1)
	if err != nil {
		return fmt.Errorf("failed to list open files: %w", err)
	}
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd < first {
			continue
		}
		// The fd of the listing itself is closed by now: EBADF is fine.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil &&
			!errors.Is(err, unix.EBADF) {
			return fmt.Errorf("failed to mark fd %d close-on-exec: %w", fd, err)
		}
	}
	return nil
}
