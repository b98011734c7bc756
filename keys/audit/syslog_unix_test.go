//go:build unix

package audit

import (
	"context"
	"fmt"
	"log/syslog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSyslogCopy(t *testing.T) {
	v := newTestVolume(t)
	sock := filepath.Join(t.TempDir(), "log.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()
	w, err := syslog.Dial("unixgram", sock, syslog.LOG_INFO|syslog.LOG_AUTHPRIV, SyslogTag)
	require.NoError(t, err)
	defer w.Close()

	l, err := Open(v.log, v.vol, Options{Syslog: w})
	require.NoError(t, err)
	require.NoError(t, l.Record(context.Background(), Event{Type: EventUnlock,
		Err: fmt.Errorf("wrong master key")}))
	require.NoError(t, l.Close())

	buf := make([]byte, 64<<10)
	n, err := conn.Read(buf)
	require.NoError(t, err)
	msg := string(buf[:n])
	line := strings.TrimSuffix(string(v.lines(t)[0]), "\n")
	// RFC 3164 framing as log/syslog writes it: <PRI>TIMESTAMP HOST TAG[PID]: MSG;
	// authpriv (10) * 8 + info (6) = 86.
	assert.True(t, strings.HasPrefix(msg, "<86>"), msg)
	assert.Contains(t, msg, SyslogTag+"["+strconv.Itoa(os.Getpid())+"]: ")
	assert.True(t, strings.HasSuffix(strings.TrimSuffix(msg, "\n"), line), msg)
}
