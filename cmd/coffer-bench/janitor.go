//go:build linux

package main

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// janitor undoes what the benchmark set up: it stops every mount daemon still
// running and removes the work directories, on success, on failure and on
// interrupt alike. Safe for concurrent use.
type janitor struct {
	mu     sync.Mutex
	mounts []*mountProc
	dirs   []string
	undo   []func() error // settings to restore, run last
	keep   bool           // leave the directories for inspection
}

func newJanitor() *janitor {
	return &janitor{}
}

// addMount registers a started daemon.
func (j *janitor) addMount(m *mountProc) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.mounts = append(j.mounts, m)
}

// addDir registers a work directory to remove at the end.
func (j *janitor) addDir(dir string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.dirs = append(j.dirs, dir)
}

// addUndo registers a function that restores a system setting at the end.
func (j *janitor) addUndo(f func() error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.undo = append(j.undo, f)
}

// setKeep makes cleanup leave the work directories.
func (j *janitor) setKeep(keep bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.keep = keep
}

// cleanup stops the daemons, then removes the work directories unless
// something is still mounted below one of them.
func (j *janitor) cleanup() {
	j.mu.Lock()
	mounts, dirs, undo, keep := j.mounts, j.dirs, j.undo, j.keep
	j.mounts, j.dirs, j.undo = nil, nil, nil
	j.mu.Unlock()

	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		select {
		case <-m.exited:
			if _, mounted, _ := mountAt(m.mnt); mounted {
				_ = unix.Unmount(m.mnt, unix.MNT_DETACH)
			}
		default:
			if err := m.stop(); err != nil {
				fmt.Fprintf(os.Stderr, "coffer-bench: warning: %v\n", err)
			}
		}
	}

	for _, d := range dirs {
		j.removeDir(d, keep)
	}
	for i := len(undo) - 1; i >= 0; i-- {
		if err := undo[i](); err != nil {
			fmt.Fprintf(os.Stderr, "coffer-bench: warning: %v\n", err)
		}
	}
}

// removeDir removes a work directory, never through a live mount.
func (j *janitor) removeDir(dir string, keep bool) {
	if keep {
		fmt.Fprintf(os.Stderr, "coffer-bench: kept %s\n", dir)
		return
	}
	live, err := mountsUnder(dir)
	if err != nil || len(live) > 0 {
		fmt.Fprintf(os.Stderr, "coffer-bench: warning: not removing %s: still mounted below it: %v %v\n",
			dir, live, err)
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(os.Stderr, "coffer-bench: warning: failed to remove %s: %v\n", dir, err)
	}
}
