//go:build linux

package fs

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestMountReadAhead checks that a mount made as root reads ahead one
// request of the largest size, as the kernel reports it in sysfs.
func TestMountReadAhead(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("only root may set the read-ahead") // CI runs as root
	}
	_, mnt := mountNew(t)
	var st unix.Stat_t
	require.NoError(t, unix.Stat(mnt, &st))
	b, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev)))
	require.NoError(t, err)
	assert.Equal(t, "1024", strings.TrimSpace(string(b)))
}
