package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/keys"
)

// unmountTimeout bounds the wait for the kernel to drop the mount.
const unmountTimeout = 10 * time.Second

type unmountOptions struct {
	mountPoint string
}

func newUnmountCommand(a *app) *cobra.Command {
	var opts unmountOptions
	return &cobra.Command{
		Use:   "unmount MOUNTPOINT",
		Short: "Unmount a coffer volume",
		Long: `Unmount the coffer volume mounted on MOUNTPOINT and wait until the mount is
gone. The mount process then exits. Files still open under the mount point
make the unmount fail with "busy": close them and try again.`,
		Example: "  coffer unmount /srv/app",
		Args:    exactArgs("MOUNTPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.mountPoint = args[0]
			return runUnmount(cmd.Context(), a, opts)
		},
	}
}

// runUnmount unmounts opts.mountPoint if it is a coffer mount.
func runUnmount(ctx context.Context, a *app, opts unmountOptions) error {
	dir, err := canonicalPath(opts.mountPoint)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mount point %s does not exist", opts.mountPoint)
	}
	if err != nil {
		return err
	}
	m, err := findMount(dir)
	if err != nil {
		return err
	}
	if m == nil {
		return fmt.Errorf("%s is not mounted", opts.mountPoint)
	}
	if m.fsType != fsType {
		return withHints(fmt.Errorf("%s is not a coffer mount (it is %s)", opts.mountPoint, m.fsType),
			"use umount(8) for other file systems")
	}

	if err := unmount(ctx, dir); err != nil {
		return err
	}
	if err := waitUnmounted(ctx, dir); err != nil {
		return err
	}
	waitServerExit(ctx, a, m.source)
	a.log.Info().Str("mountpoint", dir).Msg("unmounted")
	return nil
}

// waitServerExit waits, for up to unmountTimeout, until the process that
// served backing has let go of the volume lock: after the mount is gone it
// still writes the unmount record and the closing checkpoint of the audit
// log, and a caller that reads the log, or shuts the machine down, next
// must find them there. A lock that cannot be checked is not waited for.
func waitServerExit(ctx context.Context, a *app, backing string) {
	fd, err := unix.Open(filepath.Join(backing, keys.DirName),
		unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)

	ctx, cancel := context.WithTimeout(ctx, unmountTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB)
		if err == nil || !errors.Is(err, unix.EWOULDBLOCK) {
			return // closing fd drops the shared lock
		}
		select {
		case <-ctx.Done():
			a.log.Warn().Str("backing", backing).
				Msg("the mount process is still running after the unmount")
			return
		case <-tick.C:
		}
	}
}

// unmount asks the kernel to drop the mount: directly as root, through the
// setuid fusermount3 helper otherwise.
func unmount(ctx context.Context, dir string) error {
	if os.Geteuid() == 0 {
		err := unix.Unmount(dir, 0)
		if errors.Is(err, unix.EBUSY) {
			return busyError(dir)
		}
		if err != nil {
			return fmt.Errorf("failed to unmount %s: %w", dir, err)
		}
		return nil
	}

	bin, err := fusermountPath()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-u", dir)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if bytes.Contains(stderr.Bytes(), []byte("busy")) {
			return busyError(dir)
		}
		return fmt.Errorf("failed to unmount %s: %s: %w", dir, oneLine(stderr.String()), err)
	}
	return nil
}

// busyError explains an unmount refused because files are still in use.
func busyError(dir string) error {
	return withHints(fmt.Errorf("failed to unmount %s: mount point is busy", dir),
		"close the files and shells using it (list them with: fuser -vm "+dir+")")
}

// fusermountPath finds the FUSE mount helper.
func fusermountPath() (string, error) {
	for _, name := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", withHints(errors.New("failed to find fusermount3"),
		"install FUSE 3: apt-get install fuse3")
}

// waitUnmounted polls the mount table until dir is no longer a coffer mount.
func waitUnmounted(ctx context.Context, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, unmountTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		m, err := findMount(dir)
		if err != nil {
			return err
		}
		if m == nil || m.fsType != fsType {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("failed to unmount %s: still mounted after %s", dir, unmountTimeout)
		case <-tick.C:
		}
	}
}
