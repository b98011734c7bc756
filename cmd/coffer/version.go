package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// modulesShown are the dependencies whose versions "coffer version" reports:
// the ones that decide the filesystem and the cryptography.
var modulesShown = []struct{ label, path string }{
	{"go-fuse", "github.com/hanwen/go-fuse/v2"},
	{"tink-go", "github.com/tink-crypto/tink-go/v2"},
}

type versionOptions struct{}

func newVersionCommand(a *app) *cobra.Command {
	var opts versionOptions
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of coffer and of its main dependencies",
		Example: "  coffer version",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runVersion(a, opts)
		},
	}
}

// runVersion prints coffer's version, the Go version it was built with and
// the versions of the modules in modulesShown.
func runVersion(a *app, _ versionOptions) error {
	fmt.Fprintf(a.stdout, "coffer %s\n", version)
	fmt.Fprintf(a.stdout, "go      %s\n", runtime.Version())

	deps := map[string]string{}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			deps[d.Path] = d.Version
		}
	}
	for _, m := range modulesShown {
		v := deps[m.path]
		if v == "" {
			v = "unknown"
		}
		fmt.Fprintf(a.stdout, "%-7s %s\n", m.label, v)
	}
	return nil
}
