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

// The detached mount process gets three extra files from its parent:
//
//	fd 3  the write end of the ready pipe: one JSON readyMessage, then close
//	fd 4  the read end of the secret pipe: the passphrase bytes, if one was
//	      read, then EOF
//	fd 5  the read end of the PIN pipe: the PIN of a PKCS#11 token, if one
//	      was read, then EOF
//
// so that the parent can prompt on the terminal, never puts a passphrase or
// PIN in argv or the environment, and exits only once the mount answers or
// failed.
const (
	childReadyFD  = 3
	childSecretFD = 4
	childPINFD    = 5
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
// name); secrets (the passphrase, then the PIN; nil ones are empty) are
// handed over on pipes from fd 4 on, and wiped.
func startDetached(ctx context.Context, args []string, logWhere string,
	secrets ...*keys.Secret) error {
	defer func() {
		for _, s := range secrets {
			s.Wipe()
		}
	}()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("failed to find the coffer executable: %w", err)
	}

	readyR, readyW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("failed to create pipe: %w", err)
	}
	defer readyR.Close()
	extra := []*os.File{readyW}
	var writers []*os.File
	closeAll := func() {
		for _, f := range append(extra, writers...) {
			f.Close()
		}
	}
	for range secrets {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll()
			return fmt.Errorf("failed to create pipe: %w", err)
		}
		extra, writers = append(extra, r), append(writers, w)
	}

	// Only fds 0-2 and the pipes may reach the mount process, which lives
	// on: the caller's own inherited fds would be held open by it.
	if err := closeOnExecFrom(3); err != nil {
		closeAll()
		return err
	}
	cmd := exec.Command(exe, args...)
	cmd.ExtraFiles = extra
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	for _, f := range extra {
		f.Close()
	}
	if err != nil {
		for _, w := range writers {
			w.Close()
		}
		return fmt.Errorf("failed to start the mount process: %w", err)
	}

	for i, w := range writers {
		_, err := w.Write(secrets[i].InsecureBytes())
		w.Close()
		if err != nil {
			for _, w := range writers[i+1:] {
				w.Close()
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("failed to pass a secret to the mount process: %w", err)
		}
	}
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
