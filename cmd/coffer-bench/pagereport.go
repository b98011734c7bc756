//go:build linux

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Free page reporting (virtio-balloon, mm/page_reporting.c) hands free
// blocks of guest memory back to the host, which drops them. The next time
// the guest uses such a page, the host has to find and clear a page of its
// own before the access completes, and the guest counts that time to
// whatever touched the page first. Every phase starts after the page cache
// is dropped and the files of the previous phase are freed, so which file
// system gets the handed-back pages depends on timing: on a small virtual
// machine this made the same 512 MiB WRITE on tmpfs take 1.1 s or 3.4 s
// (daemon CPU 0.9 s against 2.3 s, all of the difference in its pwrite
// copies). The benchmark measures the file systems, not the host, so it
// pauses reporting for the run and restores the setting after.
const pageReportingOrderPath = "/sys/module/page_reporting/parameters/page_reporting_order"

// noReportingOrder is above the largest block order the buddy allocator
// has (MAX_PAGE_ORDER is 10 on x86-64 and arm64 by default), so no free
// block is large enough to be reported.
const noReportingOrder = "11"

// pageReporting is what the benchmark did with free page reporting.
type pageReporting struct {
	present bool
	paused  bool
	was     string // the order before the run
	note    string // why it could not be paused, if it could not
	touched int64  // bytes of free memory touched after pausing
}

// describe is the report's line.
func (p pageReporting) describe() string {
	switch {
	case !p.present:
		return "not in this kernel"
	case p.paused && p.was == noReportingOrder:
		return fmt.Sprintf("off (page_reporting_order %s before the run)", p.was)
	case p.paused:
		return fmt.Sprintf("paused for the run (page_reporting_order %s → %s, restored after; %d MiB of free memory touched first)",
			p.was, noReportingOrder, p.touched>>20)
	default:
		return fmt.Sprintf("left on (page_reporting_order %s): %s; figures of phases that allocate memory vary from round to round", p.was, p.note)
	}
}

// readPageReporting reads the reporting order at path. A missing file means
// the kernel has no free page reporting; p.note says why the order could
// not be read, if it could not.
func readPageReporting(path string) (p pageReporting, ok bool) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return pageReporting{}, false
	}
	if err != nil {
		return pageReporting{present: true, note: err.Error()}, false
	}
	return pageReporting{present: true, was: strings.TrimSpace(string(b))}, true
}

// currentPageReporting describes the setting at path without changing it.
func currentPageReporting(path string) pageReporting {
	p, ok := readPageReporting(path)
	if ok {
		p.note = "kept by request (-keep-page-reporting or -quick)"
	}
	return p
}

// pausePageReporting raises the reporting order at path beyond any block
// order. It returns what it did and a function that restores the old order
// (nil when nothing was changed).
func pausePageReporting(path string) (pageReporting, func() error) {
	p, ok := readPageReporting(path)
	if !ok {
		return p, nil
	}
	if p.was == noReportingOrder {
		p.paused = true
		return p, nil
	}
	if err := os.WriteFile(path, []byte(noReportingOrder+"\n"), 0o644); err != nil {
		p.note = fmt.Sprintf("cannot raise it: %v", err)
		return p, nil
	}
	p.paused = true
	was := p.was
	return p, func() error {
		if err := os.WriteFile(path, []byte(was+"\n"), 0o644); err != nil {
			return fmt.Errorf("failed to restore free page reporting: write %s to %s: %w", was, path, err)
		}
		return nil
	}
}

// maxTouch bounds touchFreeMemory: more than the run keeps in memory at once
// (every file system's WRITE, RANDREAD and tree files on tmpfs, about 5 GiB,
// and the page cache of one phase).
const maxTouch = 8 << 30

// touchFreeMemory maps and fills up to maxTouch bytes (at most half of the
// available memory), then unmaps them. Pages reported to the host before
// the pause stay without host memory until touched; touching them now, while
// nothing is measured, spares the first round that cost. Freed again with
// reporting paused, they keep their host memory. It returns the bytes
// touched.
func touchFreeMemory() (int64, error) {
	avail, err := memAvailable()
	if err != nil {
		return 0, err
	}
	size := min(int64(maxTouch), avail/2) &^ (1<<20 - 1)
	if size <= 0 {
		return 0, nil
	}
	m, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return 0, fmt.Errorf("failed to touch %d MiB of free memory: %w", size>>20, err)
	}
	if err := unix.Munmap(m); err != nil {
		return 0, fmt.Errorf("failed to unmap touched memory: %w", err)
	}
	return size, nil
}

// memAvailable reads MemAvailable from /proc/meminfo, in bytes.
func memAvailable() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemAvailable:" {
			kib, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: MemAvailable %q: %w", fields[1], err)
			}
			return kib << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("/proc/meminfo has no MemAvailable line")
}
