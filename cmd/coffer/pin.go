package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// errNoPINTerminal is returned when a token needs a PIN, no PIN file is
// given and there is no terminal to ask on.
var errNoPINTerminal = withHints(errors.New("no terminal to ask for the PIN on"),
	"pass --pin-file FILE (a file holding the PIN, mode 0600) or add "+
		"pin-source=file:/PATH to the pkcs11: URI")

// pinPrompt returns a masterkey.PINFunc that asks for a token's PIN on the
// terminal without echo.
func pinPrompt(a *app) masterkey.PINFunc {
	return func(_ context.Context, req masterkey.PINRequest) (*keys.Secret, error) {
		in, ok := a.stdin.(*os.File)
		if !ok || !term.IsTerminal(int(in.Fd())) {
			return nil, errNoPINTerminal
		}
		out := io.Writer(in)
		prompt := fmt.Sprintf("PIN for token %q: ", req.Token)
		if _, err := fmt.Fprint(in, prompt); err != nil {
			out = a.stderr
			fmt.Fprint(out, prompt)
		}
		b, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(out)
		if err != nil {
			return nil, err
		}
		return keys.SecretFromBytes(b), nil
	}
}
