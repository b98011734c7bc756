package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// helperNames are the program names under which coffer acts as a mount
// helper: mount(8) runs /sbin/mount.fuse.coffer for type fuse.coffer when
// that exists, and mount.coffer for type coffer.
var helperNames = map[string]bool{"mount.fuse.coffer": true, "mount.coffer": true}

// isHelperCall reports whether args are the mount helper's calling form,
// "SOURCE MOUNTPOINT [-o OPTIONS]", as mount.fuse3 runs the program named by
// the subtype of fuse.coffer: the first argument is not a command but a path.
func isHelperCall(root *cobra.Command, args []string) bool {
	if len(args) < 2 || strings.HasPrefix(args[0], "-") || strings.HasPrefix(args[1], "-") {
		return false
	}
	if cmd, _, err := root.Find(args[:1]); err == nil && cmd != root {
		return false
	}
	if strings.Contains(args[0], "/") {
		return true
	}
	fi, err := os.Stat(args[0])
	return err == nil && fi.IsDir()
}

// helperArgs turns the mount helper's arguments into a coffer mount command
// line. mount(8) passes "SOURCE MOUNTPOINT [-sfnv] [-N NS] [-o OPTS]
// [-t TYPE]"; mount.fuse3 passes "SOURCE MOUNTPOINT -o OPTS". The options
// themselves are checked by coffer mount.
func helperArgs(args []string) ([]string, error) {
	if len(args) < 2 {
		return nil, withHints(usageErrorf("missing argument: want SOURCE MOUNTPOINT [-o OPTIONS]"),
			"as a mount helper coffer is run by mount(8): mount -t fuse.coffer BACKING MOUNTPOINT -o OPTIONS")
	}
	out := []string{"mount", args[0], args[1]}
	var opts []string
	rest := args[2:]
	for i := 0; i < len(rest); i++ {
		arg := rest[i]
		switch {
		case arg == "-o" || arg == "-t":
			if i+1 == len(rest) {
				return nil, usageErrorf("missing value of %s", arg)
			}
			i++
			if arg == "-t" {
				if err := checkHelperType(rest[i]); err != nil {
					return nil, err
				}
				continue
			}
			opts = append(opts, rest[i])
		case strings.HasPrefix(arg, "-o"):
			opts = append(opts, arg[2:])
		case arg == "-n" || arg == "-s" || arg == "-v" || arg == "-sv" || arg == "-nv":
			// No mtab to write, sloppy options, verbose: nothing to do.
		default:
			return nil, withHints(usageErrorf("unsupported mount helper argument %q", arg),
				"coffer accepts SOURCE MOUNTPOINT [-n] [-s] [-v] [-o OPTIONS] [-t fuse.coffer]")
		}
	}
	if len(opts) > 0 {
		out = append(out, "-o", strings.Join(opts, ","))
	}
	return out, nil
}

// checkHelperType refuses a file system type other than coffer's.
func checkHelperType(t string) error {
	switch t {
	case "fuse.coffer", "coffer", "fuse":
		return nil
	}
	return usageErrorf("file system type %q is not coffer's: want fuse.coffer", t)
}

// optionFlags maps the key=value mount options that fstab and mount(8) can
// carry to the coffer mount flags they set.
var optionFlags = []string{
	"master", "passphrase-file", "pin-file", "tpm-device", "kms-endpoint",
	"recovery-key", "log-file",
}

// ignoredOptions are the generic options that mount(8), mount.fuse3,
// /etc/fstab and systemd add or use themselves. coffer accepts and ignores
// them. A coffer mount is always nosuid and nodev: suid and dev are accepted
// (mount.fuse3 adds them for root) and have no effect.
var ignoredOptions = map[string]bool{
	"defaults": true, "auto": true, "noauto": true, "nofail": true, "_netdev": true,
	"user": true, "nouser": true, "users": true, "owner": true, "group": true,
	"nosuid": true, "suid": true, "nodev": true, "dev": true,
	"async": true, "atime": true, "noatime": true, "relatime": true,
}

// isIgnoredOption reports whether opt is a generic option coffer ignores,
// including systemd's and util-linux's x-* options and comment=.
func isIgnoredOption(opt string) bool {
	return ignoredOptions[opt] || strings.HasPrefix(opt, "x-") || strings.HasPrefix(opt, "comment=")
}

// helperProgram returns the program name coffer was run as, for the mount
// helper check.
func helperProgram(arg0 string) string {
	if i := strings.LastIndexByte(arg0, '/'); i >= 0 {
		return arg0[i+1:]
	}
	return arg0
}

// mountHelperUsage is the paragraph of coffer mount --help about fstab.
const mountHelperUsage = `As a mount helper (/etc/fstab type fuse.coffer, mount -t fuse.coffer, or
run as mount.fuse.coffer), coffer takes SOURCE MOUNTPOINT -o OPTIONS, where
OPTIONS may also carry these flags as key=value: master=, passphrase-file=,
pin-file=, tpm-device=, kms-endpoint=, recovery-key=, log-file=. The
generic options (defaults, nofail, _netdev, noauto, auto,
user, users, x-*, comment=, nosuid, nodev, suid, dev, noatime) are accepted
and ignored: a coffer mount is always nosuid and nodev.`
