package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cofferfs/coffer/keys/keyfile"
)

// hintError is an error that carries advice for the user, printed as
// "hint: ..." lines under the error.
type hintError struct {
	err   error
	hints []string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

// withHints attaches hints to err. It returns nil for a nil err.
func withHints(err error, hints ...string) error {
	if err == nil {
		return nil
	}
	return &hintError{err: err, hints: hints}
}

// usageError marks a mistake in the command line; main exits with exitUsage.
type usageError struct {
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf returns a usageError with a formatted message.
func usageErrorf(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// asUsage marks err as a usage error, keeping its chain.
func asUsage(err error) error {
	if err == nil {
		return nil
	}
	return &usageError{err: err}
}

// hinter is an error from another package that knows how to fix itself,
// such as keyfile.PermissionError.
type hinter interface {
	Hint() string
}

// hintsOf collects the hints along err's chain: those of every hintError,
// outermost first, then that of the first error with a Hint method. A hint
// given twice along the chain is kept once.
func hintsOf(err error) []string {
	var out []string
	for _, h := range chainHints(err) {
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// chainHints is hintsOf with repeats.
func chainHints(err error) []string {
	var hints []string
	for e := err; e != nil; {
		var he *hintError
		if !errors.As(e, &he) {
			break
		}
		hints = append(hints, he.hints...)
		e = he.err
	}
	var h hinter
	if errors.As(err, &h) {
		hints = append(hints, h.Hint())
	}
	return hints
}

// printError writes err to w as "coffer: error: ..." on one line, followed by
// its hints. Control characters left in them (from a path or URI read from
// a file, say) are escaped (printable).
func printError(w io.Writer, err error) {
	fmt.Fprintf(w, "coffer: error: %s\n", printable(oneLine(err.Error())))
	for _, h := range hintsOf(err) {
		fmt.Fprintf(w, "hint: %s\n", printable(oneLine(h)))
	}
}

// oneLine folds a possibly multi-line message (fusermount3 output, for one)
// into a single line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// editedError shows a shortened message for err, keeping its chain.
type editedError struct {
	msg string
	err error
}

func (e *editedError) Error() string { return e.msg }
func (e *editedError) Unwrap() error { return e.err }

// hintOnce drops from err's message the advice that perm already gives as
// a hint line, so that the fix is printed once.
func hintOnce(err error, perm *keyfile.PermissionError) error {
	msg := strings.Replace(err.Error(), "; run "+perm.Hint(), "", 1)
	return &editedError{msg: msg, err: err}
}
