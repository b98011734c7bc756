//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPausePageReporting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "page_reporting_order")
	if err := os.WriteFile(path, []byte("9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, restore := pausePageReporting(path)
	if !p.present || !p.paused || p.was != "9" || restore == nil {
		t.Fatalf("pausePageReporting = %+v, restore %v; want paused from 9", p, restore != nil)
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != "11" {
		t.Fatalf("order during the run = %q, want 11", b)
	}
	if !strings.Contains(p.describe(), "9 → 11") {
		t.Errorf("describe() = %q, want the change named", p.describe())
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != "9" {
		t.Fatalf("order after restore = %q, want 9", b)
	}
}

func TestPausePageReportingAbsent(t *testing.T) {
	p, restore := pausePageReporting(filepath.Join(t.TempDir(), "missing"))
	if p.present || p.paused || restore != nil {
		t.Fatalf("pausePageReporting of a missing file = %+v, restore %v; want nothing done", p, restore != nil)
	}
	if p.describe() != "not in this kernel" {
		t.Errorf("describe() = %q", p.describe())
	}
}

func TestPausePageReportingRefused(t *testing.T) {
	// A directory cannot be written as a file: the kernel refusing the value
	// looks the same to the benchmark.
	dir := t.TempDir()
	path := filepath.Join(dir, "order")
	if err := os.WriteFile(path, []byte("9\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// root writes read-only files; make the write fail another way.
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/proc/self/stat", path); err != nil {
			t.Fatal(err)
		}
	}
	p, restore := pausePageReporting(path)
	if !p.present || p.paused || restore != nil {
		t.Fatalf("pausePageReporting = %+v, restore %v; want left on", p, restore != nil)
	}
	if !strings.Contains(p.describe(), "left on") || !strings.Contains(p.describe(), "cannot raise it") {
		t.Errorf("describe() = %q", p.describe())
	}
}

// The janitor restores the setting at the end, after the directories are
// gone, and a failing restore does not stop the others.
func TestJanitorRunsUndo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "page_reporting_order")
	if err := os.WriteFile(path, []byte("9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	dir := filepath.Join(work, "coffer-bench-1")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	j := newJanitor()
	j.addDir(dir)
	_, restore := pausePageReporting(path)
	j.addUndo(restore)
	j.addUndo(func() error { return os.ErrPermission })
	j.cleanup()
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != "9" {
		t.Fatalf("order after cleanup = %q, want 9 restored", b)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("work directory still there after cleanup: %v", err)
	}
	j.cleanup() // a second cleanup has nothing left to undo
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != "9" {
		t.Fatalf("order after a second cleanup = %q", b)
	}
}
