package main

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"
)

// Log formats accepted by --log-format.
const (
	logFormatAuto    = "auto"
	logFormatConsole = "console"
	logFormatJSON    = "json"
)

// newLogger returns a logger writing to w at the named level. Format "auto"
// picks human-readable console output when w is a terminal and JSON lines
// otherwise.
func newLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return zerolog.Nop(), err
	}

	tty := isTerminal(w)
	switch format {
	case logFormatAuto:
		if !tty {
			break
		}
		fallthrough
	case logFormatConsole:
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !tty}
	case logFormatJSON:
	default:
		return zerolog.Nop(), usageErrorf("invalid --log-format %q: want auto, console or json", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// parseLevel accepts the four levels coffer documents.
func parseLevel(level string) (zerolog.Level, error) {
	switch level {
	case "debug":
		return zerolog.DebugLevel, nil
	case "info":
		return zerolog.InfoLevel, nil
	case "warn":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	}
	return zerolog.NoLevel, usageErrorf("invalid --log-level %q: want debug, info, warn or error", level)
}

// isTerminal reports whether w is a file connected to a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
