//go:build linux

package integration

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/keys/awskms/kmstest"
	"github.com/cofferfs/coffer/keys/pkcs11/softhsmtest"
	"github.com/cofferfs/coffer/keys/tpm2/tpm2test"
)

// adminGuide is the document whose walk-throughs TestAdminGuide runs.
const adminGuide = "../docs/admin-guide.md"

// walkthroughMarker precedes each shell block that belongs to a walk-through.
var walkthroughMarker = regexp.MustCompile(`^<!-- walkthrough: ([a-z0-9-]+) -->$`)

// walkthroughs returns the shell blocks of the admin guide by walk-through,
// in document order.
func walkthroughs(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(adminGuide)
	require.NoError(t, err)
	defer f.Close()

	blocks := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := walkthroughMarker.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		require.True(t, sc.Scan() && sc.Text() == "```sh", "marker %q not followed by a sh block", m[1])
		var b strings.Builder
		for sc.Scan() && sc.Text() != "```" {
			b.WriteString(sc.Text() + "\n")
		}
		blocks[m[1]] = append(blocks[m[1]], b.String())
	}
	require.NoError(t, sc.Err())
	return blocks
}

// hostPath matches the absolute paths of the guide that the test moves
// under its own root: /etc, /srv, /root and /mnt at the start of a word,
// after = or a quote, or after file://.
var hostPath = regexp.MustCompile(`(^|[\s='"(:,]|file://)/(etc|srv|root|mnt)\b`)

// guideEnv is where a walk-through runs: a root for the host's paths and
// the replacements of devices and cloud names.
type guideEnv struct {
	root    string
	replace map[string]string // literal text of the guide -> test value
	between map[int]string    // commands to run before block N (from 0)
	mounts  []string          // mount points to detach if the script fails
	check   string            // commands run after the walk-through
}

// substitute rewrites a block of the guide for the test machine.
func (e guideEnv) substitute(block string) string {
	for from, to := range e.replace {
		block = strings.ReplaceAll(block, from, to)
	}
	return hostPath.ReplaceAllString(block, "${1}"+e.root+"/${2}")
}

// systemctlStandIn starts and stops coffer@NAME.service as the unit does:
// it reads /etc/coffer/NAME.conf and runs coffer mount (in the background
// mode, which returns once the mount answers, as systemctl start returns
// after READY=1) and coffer unmount. Other units are left alone.
const systemctlStandIn = `#!/bin/bash
set -euo pipefail
cmd=$1; shift
[ "${1:-}" = --now ] && shift
unit=${1:-}
case $cmd in
daemon-reload) exit 0 ;;
enable|start|stop|restart) ;;
*) echo "systemctl stand-in: $cmd is not supported" >&2; exit 1 ;;
esac
case $unit in
coffer-rotate@*.timer)
	# A timer that fires at once: the service's command for its volume.
	inst=${unit#coffer-rotate@}; inst=${inst%.timer}
	case $cmd in stop) ;; *) coffer rotate --if-due "$(systemd-escape --unescape --path "$inst")" ;; esac
	exit 0 ;;
coffer@*) ;;
*) exit 0 ;;
esac
name=${unit#coffer@}; name=${name%.service}
set -a; . "$COFFER_GUIDE_ROOT/etc/coffer/$name.conf"; set +a
case $cmd in stop|restart) coffer unmount "$MOUNTPOINT" ;; esac
case $cmd in stop) ;; *) coffer mount "$BACKING" "$MOUNTPOINT" -o "$OPTIONS" ;; esac
`

// newGuideEnv makes a root with the directories the guide's host has.
func newGuideEnv(t *testing.T) guideEnv {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"etc", "srv", "root", "mnt/shared"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/fstab"), nil, 0o644))
	return guideEnv{root: root, replace: map[string]string{}, between: map[int]string{}}
}

// runWalkthrough runs the blocks of one walk-through as one bash script in
// a private mount namespace in which /usr/local/sbin holds coffer (mount(8)
// finds it there), /etc/fstab is the root's, and systemctl is the stand-in.
// It waits until every mount the script made has been served to its end.
func runWalkthrough(t *testing.T, e guideEnv, blocks []string) {
	t.Helper()
	requireTools(t, "unshare", "mount", "umount", "mount.fuse3", "openssl")
	require.NotEmpty(t, blocks, "no blocks in the guide")
	bin := t.TempDir()
	require.NoError(t, os.Symlink(cofferBin, filepath.Join(bin, "coffer")))
	shim := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(shim, "systemctl"), []byte(systemctlStandIn), 0o755))

	var script strings.Builder
	fmt.Fprintf(&script, "trap 'for m in %s; do umount -l $m 2>/dev/null || true; done' EXIT\n",
		strings.Join(e.mounts, " "))
	fmt.Fprintf(&script, "mount --bind %s /usr/local/sbin\nmount --bind %s/etc/fstab /etc/fstab\n",
		shellQuote(bin), shellQuote(e.root))
	fmt.Fprintf(&script, "export PATH=%s:$PATH COFFER_GUIDE_ROOT=%s\nset -x\n", shellQuote(shim),
		shellQuote(e.root))
	// "! cmd" does not stop a set -e script: the checks use fails instead.
	script.WriteString(`fails() { if "$@"; then echo "succeeded but must fail: $*" >&2; exit 1; fi; }` + "\n")
	for i, b := range blocks {
		fmt.Fprintf(&script, "%s\n# --- block %d of the guide\n%s", e.between[i], i+1, e.substitute(b))
	}
	script.WriteString("# --- checks of the test\n" + e.check)

	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()
	runEnv(t, "", []string{"NOTIFY_SOCKET=" + sock}, "unshare", "--mount", "--propagation", "private",
		"bash", "-euo", "pipefail", "-c", script.String())

	// Every mount sent READY=1 before its mount command returned, so all
	// of them are queued now: take what is queued without waiting, then
	// wait for the rest of the STATUS=unmounted reports, each mount
	// process's last act.
	ready, done := 0, 0
	count := func(msg string) {
		if strings.Contains(msg, "READY=1") {
			ready++
		}
		if strings.Contains(msg, "STATUS=unmounted") {
			done++
		}
	}
	for _, msg := range queuedGrams(t, conn) {
		count(msg)
	}
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(cmdTimeout)))
	buf := make([]byte, 4096)
	for done < ready {
		n, err := conn.Read(buf)
		require.NoError(t, err, "%d mounts, %d ended", ready, done)
		count(string(buf[:n]))
	}
	require.Positive(t, ready, "the walk-through mounted nothing")
}

// queuedGrams returns the datagrams queued on conn, without waiting.
func queuedGrams(t *testing.T, conn *net.UnixConn) []string {
	raw, err := conn.SyscallConn()
	require.NoError(t, err)
	var msgs []string
	buf := make([]byte, 4096)
	for {
		var n int
		var rerr error
		require.NoError(t, raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return true
		}))
		if errors.Is(rerr, unix.EAGAIN) {
			return msgs
		}
		require.NoError(t, rerr)
		msgs = append(msgs, string(buf[:n]))
	}
}

// TestAdminGuide runs the walk-throughs of docs/admin-guide.md.
func TestAdminGuide(t *testing.T) {
	requireFUSE(t)
	blocks := walkthroughs(t)
	require.ElementsMatch(t, []string{"tpm", "recovery", "rotation", "kms", "hsm"}, sortedKeys(blocks),
		"every walk-through of the guide needs its subtest here")

	t.Run("tpm", func(t *testing.T) {
		tpm := tpm2test.Start(t)
		e := newGuideEnv(t)
		e.replace["/dev/tpmrm0"] = tpm.Socket
		myapp := filepath.Join(e.root, "etc/myapp")
		require.NoError(t, os.MkdirAll(filepath.Join(myapp, "secrets"), 0o750))
		require.NoError(t, os.WriteFile(filepath.Join(myapp, "app.conf"), []byte("listen=:8080\n"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(myapp, "secrets/db.password"),
			[]byte("guide-plaintext-marker\n"), 0o640))
		e.mounts = []string{myapp}
		e.check = fmt.Sprintf(`
test "$(cat %[1]s/secrets/db.password)" = guide-plaintext-marker
test "$(stat -c %%a %[1]s/secrets/db.password)" = 640
fails grep -rq guide-plaintext-marker %[2]s
fails test -e %[1]s.plain
systemctl stop coffer@myapp.service
`, myapp, filepath.Join(e.root, "srv/coffer/myapp"))
		runWalkthrough(t, e, blocks["tpm"])
	})

	t.Run("recovery", func(t *testing.T) {
		oldHost, newHost := tpm2test.Start(t), tpm2test.Start(t)
		e := newGuideEnv(t)
		// /dev/tpmrm0 is a link to the old host's TPM, then to the new one's.
		dev := filepath.Join(e.root, "tpmrm0")
		require.NoError(t, os.Symlink(oldHost.Socket, dev))
		e.replace["/dev/tpmrm0"] = dev
		e.between[1] = fmt.Sprintf("ln -sfn %s %s   # the disk is in the new host", newHost.Socket, dev)
		myapp := filepath.Join(e.root, "etc/myapp")
		e.mounts = []string{myapp}
		e.check = fmt.Sprintf(`
fails grep -rq s3cret %[2]s
test "$(coffer master list %[2]s | awk '$2 == "tpm2"' | wc -l)" = 1
coffer unmount %[1]s
ln -sfn %[3]s %[4]s
fails coffer mount %[2]s %[1]s --tpm-device %[4]s
`, myapp, filepath.Join(e.root, "srv/coffer/myapp"), oldHost.Socket, dev)
		runWalkthrough(t, e, blocks["recovery"])
	})

	t.Run("rotation", func(t *testing.T) {
		e := newGuideEnv(t)
		myapp := filepath.Join(e.root, "etc/myapp")
		backing := filepath.Join(e.root, "srv/coffer/myapp")
		e.mounts = []string{myapp}
		e.check = fmt.Sprintf(`
gen=$(coffer status %[2]s --json | sed -n 's/^  "generation": *\([0-9]*\).*/\1/p')
test "$gen" -gt 1
fails grep -rq t0ps3cret %[2]s
systemctl stop coffer@myapp.service
systemctl start coffer@myapp.service
test "$(cat %[1]s/token)" = token=t0ps3cret
systemctl stop coffer@myapp.service
`, myapp, backing)
		runWalkthrough(t, e, blocks["rotation"])
	})

	t.Run("kms", func(t *testing.T) {
		kms := kmstest.Start(t)
		kmstest.SetCredentials(t)
		t.Setenv("AWS_ENDPOINT_URL_KMS", kms.Endpoint)
		e := newGuideEnv(t)
		e.replace["arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"] =
			kms.CreateKey(t)
		e.mounts = []string{filepath.Join(e.root, "etc/web"), filepath.Join(e.root, "root/web1-takeover")}
		// The second block runs on another host after web1 was lost.
		e.between[1] = "systemctl stop coffer@web.service   # web1 is lost"
		e.check = fmt.Sprintf("! grep -rq s3cret %s\n", filepath.Join(e.root, "mnt/shared/coffer/web1"))
		runWalkthrough(t, e, blocks["kms"])
	})

	t.Run("hsm", func(t *testing.T) {
		softhsmtest.New(t)
		e := newGuideEnv(t)
		myapp := filepath.Join(e.root, "etc/myapp")
		e.mounts = []string{myapp}
		e.check = fmt.Sprintf(`
test "$(findmnt -n -o FSTYPE --mountpoint %[1]s)" = fuse.coffer
fails grep -rq abc123 %[2]s
umount %[1]s
`, myapp, filepath.Join(e.root, "srv/coffer/myapp"))
		runWalkthrough(t, e, blocks["hsm"])
	})
}
