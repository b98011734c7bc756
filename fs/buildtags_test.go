//go:build linux

package fs

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLinuxOnlyBuildTags checks that every Go file of the FUSE packages
// starts with "//go:build linux" (possibly "&& more"): one file without it breaks the Windows
// build of the admin commands (GOOS=windows go vet ./... in make check).
func TestLinuxOnlyBuildTags(t *testing.T) {
	dirs := []string{".", "../integration", "../stress", "../stress/exerciser",
		"../cmd/coffer-bench"}
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if !hasLinuxTag(t, f) {
				t.Errorf("%s: first line must be //go:build linux (this package needs FUSE)", f)
			}
		}
	}
}

func hasLinuxTag(t *testing.T, path string) bool {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return false
	}
	line := strings.TrimSpace(sc.Text())
	return line == "//go:build linux" || strings.HasPrefix(line, "//go:build linux && ")
}
