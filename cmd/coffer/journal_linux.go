package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// journalSocket is where journald takes log entries in its native protocol
// (systemd.journal-fields(7), "Native Journal Protocol"). A variable so that
// tests can point it at their own socket.
var journalSocket = "/run/systemd/journal/socket"

// journalIdentifier is the SYSLOG_IDENTIFIER of coffer's entries: read them
// with journalctl -t coffer.
const journalIdentifier = "coffer"

// journalAvailable reports whether journald's socket exists.
func journalAvailable() bool {
	fi, err := os.Stat(journalSocket)
	return err == nil && fi.Mode().Type() == fs.ModeSocket
}

// stderrIsJournal reports whether standard error is connected to the
// journal, as systemd says in $JOURNAL_STREAM ("DEVICE:INODE") for the
// services it starts.
func stderrIsJournal() bool {
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(os.Stderr.Fd()), &st); err != nil {
		return false
	}
	return dev == strconv.FormatUint(st.Dev, 10) && ino == strconv.FormatUint(st.Ino, 10)
}

// journalWriter sends each zerolog event, one JSON object, as one journal
// entry: MESSAGE is the JSON line, PRIORITY follows the level.
type journalWriter struct {
	conn *net.UnixConn
}

// dialJournal connects to journald's socket.
func dialJournal() (*journalWriter, error) {
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: journalSocket, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("failed to connect to the journal: %w", err)
	}
	return &journalWriter{conn: conn}, nil
}

// Write implements io.Writer for events without a level.
func (w *journalWriter) Write(p []byte) (int, error) {
	return w.WriteLevel(zerolog.NoLevel, p)
}

// WriteLevel implements zerolog.LevelWriter.
func (w *journalWriter) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	var b bytes.Buffer
	b.WriteString("PRIORITY=" + strconv.Itoa(journalPriority(l)) + "\n")
	b.WriteString("SYSLOG_IDENTIFIER=" + journalIdentifier + "\n")
	journalField(&b, "MESSAGE", bytes.TrimRight(p, "\n"))
	if _, err := w.conn.Write(b.Bytes()); err != nil {
		return 0, fmt.Errorf("failed to write to the journal: %w", err)
	}
	return len(p), nil
}

// journalField appends one field in the native protocol: NAME=value on one
// line, or, for a value holding a newline, NAME, a newline, the value's
// length as 64-bit little endian, the value and a newline.
func journalField(b *bytes.Buffer, name string, value []byte) {
	if !bytes.ContainsRune(value, '\n') {
		b.WriteString(name + "=")
		b.Write(value)
		b.WriteByte('\n')
		return
	}
	b.WriteString(name + "\n")
	_ = binary.Write(b, binary.LittleEndian, uint64(len(value)))
	b.Write(value)
	b.WriteByte('\n')
}

// journalPriority maps a zerolog level to a syslog priority.
func journalPriority(l zerolog.Level) int {
	switch l {
	case zerolog.TraceLevel, zerolog.DebugLevel:
		return 7
	case zerolog.InfoLevel, zerolog.NoLevel:
		return 6
	case zerolog.WarnLevel:
		return 4
	case zerolog.ErrorLevel:
		return 3
	default: // fatal, panic
		return 2
	}
}

// logToJournal makes a JSON logger on the journal the app's logger.
func logToJournal(a *app) error {
	w, err := dialJournal()
	if err != nil {
		return err
	}
	log, err := newLogger(w, a.logLevel, logFormatJSON)
	if err != nil {
		return err
	}
	a.log = log
	return nil
}
