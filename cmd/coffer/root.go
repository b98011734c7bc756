package main

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cofferfs/coffer/keys/masterkey"
)

// app holds what every command shares: the standard streams and the logger
// built from the global flags.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	logLevel  string
	logFormat string
	log       zerolog.Logger
}

const rootIntro = `coffer is a transparent encryption filesystem. Files written through the
mount point are stored encrypted in the backing directory, each under its own
data key; the data keys are wrapped by the volume's key ring, and the ring is
sealed by one or more master keys kept outside the backing directory.`

// rootLong is the root command's description. It lists the master-key kinds
// this build offers (the kinds registered by the kind_*.go imports), so it
// is built at run time, not as a constant.
func rootLong() string {
	var b strings.Builder
	b.WriteString(rootIntro + "\n\nMaster keys are named by URI; this build accepts:\n")
	for _, form := range masterkey.Forms() {
		b.WriteString("  " + form + "\n")
	}
	b.WriteString(`A key file holds 32 random bytes ("coffer keys create" makes one); a
passphrase is stretched with Argon2id. docs/master-keys.md explains each kind.`)
	return b.String()
}

const rootExample = `  coffer keys create file:///etc/coffer/app.key
  mkdir -m 700 /srv/app.enc /srv/app
  coffer init /srv/app.enc --master file:///etc/coffer/app.key
  coffer mount /srv/app.enc /srv/app
  coffer status /srv/app.enc
  coffer unmount /srv/app`

// newRootCommand builds the command tree around a.
func newRootCommand(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "coffer",
		Short:         "Transparent encryption filesystem with per-file data keys",
		Long:          rootLong(),
		Example:       rootExample,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		RunE:          runGroup,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			// A mount logs its life (mounted, unlocked, unmounted) by
			// default; one-shot commands only their problems.
			if cmd.Name() == "mount" && !cmd.Flags().Changed("log-level") {
				a.logLevel = "info"
			}
			log, err := newLogger(a.stderr, a.logLevel, a.logFormat)
			a.log = log
			if err != nil {
				return err
			}
			return refuseEmptyFlags(cmd)
		},
		SuggestionsMinimumDistance: 2,
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(flagError)
	root.SetUsageTemplate(root.UsageTemplate() + "\n" + exitCodesHelp + "\n")

	pf := root.PersistentFlags()
	pf.StringVar(&a.logLevel, "log-level", "warn",
		"log level: debug, info, warn or error (mount defaults to info)")
	pf.StringVar(&a.logFormat, "log-format", logFormatAuto,
		"log format: auto (console on a terminal, JSON otherwise), console or json")

	root.AddCommand(
		newKeysCommand(a),
		newInitCommand(a),
		newStatusCommand(a),
		newConfigCommand(a),
		newAuditCommand(a),
		newMasterCommand(a),
		newRecoveryCommand(a),
		newBackupCommand(a),
		newRestoreCommand(a),
		newVersionCommand(a),
		newGenManCommand(a),
	)
	root.AddCommand(platformCommands(a)...)
	refuseEmptyItems(root)

	// cobra's completion command prints its help for an unknown shell and
	// exits 0: make that the usage error of every other group.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Args, c.RunE = cobra.ArbitraryArgs, runGroup
		}
	}
	return root
}

// runGroup runs a command that only groups subcommands: without arguments it
// prints the help, with any it reports an unknown command.
func runGroup(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	err := usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
	hints := []string{fmt.Sprintf("run '%s --help' for the list of commands", cmd.CommandPath())}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		hints = append([]string{"did you mean " + strings.Join(s, " or ") + "?"}, hints...)
	}
	return withHints(err, hints...)
}

// flagError turns a flag parsing error into a usage error. An unknown flag
// may be an argument that starts with "-", such as an encrypted backing name
// (base64url): the hint says how to pass one.
func flagError(cmd *cobra.Command, err error) error {
	hints := []string{fmt.Sprintf("run '%s --help' for usage", cmd.CommandPath())}
	if msg := err.Error(); strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag") {
		hints = append(hints, fmt.Sprintf(
			"an argument starting with - needs -- before it: %s [flags] -- ARGS", cmd.CommandPath()))
	}
	return withHints(asUsage(humanNumberError(err)), hints...)
}

// numberError matches what pflag says about a number it cannot parse,
// which names Go's strconv function.
var numberError = regexp.MustCompile(`strconv\.Parse\w+: parsing "[^"]*": (invalid syntax|value out of range)`)

// humanNumberError rewrites pflag's number errors in plain words.
func humanNumberError(err error) error {
	msg := err.Error()
	m := numberError.FindStringSubmatch(msg)
	if m == nil {
		return err
	}
	what := "not a whole number"
	if m[1] == "value out of range" {
		what = "out of range"
	}
	return errors.New(strings.Replace(msg, m[0], what, 1))
}

// refuseEmptyFlags refuses a string flag given an empty value, which the
// commands would take as "not given": a unit's --master ${KEY} with KEY
// unset must not mean "try every master key" (docs/cli.md: an empty
// argument is a usage error).
func refuseEmptyFlags(cmd *cobra.Command) error {
	var err error
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if err == nil && f.Value.Type() == "string" && f.Value.String() == "" {
			err = withHints(usageErrorf("empty value for --%s", f.Name),
				"give it a value, or leave the flag out")
		}
	})
	return err
}

// refuseEmptyItems makes every list flag of cmd and its subcommands
// (--skip-master, --event, init's --master) refuse an empty value or an
// empty item, which would otherwise add nothing: an empty --skip-master would
// skip nothing and --skip-master , would look up a master key "". Mount's
// -o is left alone: mount(8) may hand on empty items, which mean nothing.
func refuseEmptyItems(cmd *cobra.Command) {
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok && f.Name != "options" {
			f.Value = &nonEmptyList{Value: f.Value, list: sv}
		}
	})
	for _, c := range cmd.Commands() {
		refuseEmptyItems(c)
	}
}

// nonEmptyList is a list flag whose Set refuses a value that adds no item
// or an empty one. pflag reports the error as a bad flag value: exit 2.
type nonEmptyList struct {
	pflag.Value
	list pflag.SliceValue
	set  bool // a first Set replaces the default: check every item
}

func (l *nonEmptyList) Set(s string) error {
	before := len(l.list.GetSlice())
	if !l.set {
		before = 0
	}
	if err := l.Value.Set(s); err != nil {
		return err
	}
	l.set = true
	items := l.list.GetSlice()
	if s == "" || len(items) <= before || slices.Contains(items[before:], "") {
		return errors.New("empty value or list item: give each item a value, or leave the flag out")
	}
	return nil
}

// exactArgs is a cobra.PositionalArgs that wants one argument per name and
// reports a usage error naming what is missing or extra.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		var err error
		switch {
		case len(args) < len(names):
			err = usageErrorf("missing argument %s", strings.Join(names[len(args):], " "))
		case len(args) > len(names):
			err = usageErrorf("unexpected argument %q", args[len(names)])
		default:
			for i, arg := range args {
				if arg == "" {
					err = usageErrorf("empty argument %s", names[i])
					break
				}
			}
			if err == nil {
				return nil
			}
		}
		return withHints(err, fmt.Sprintf("usage: %s", cmd.UseLine()))
	}
}
