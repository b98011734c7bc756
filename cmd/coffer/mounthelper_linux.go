package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// applyOptionFlags moves the key=value options of o.options into the flags
// of cmd they stand for, drops the ignored generic options, and leaves the
// rest in o.options for parse. An option and a flag that disagree are a
// usage error.
func applyOptionFlags(cmd *cobra.Command, o *mountOptions) error {
	var keep []string
	seen := map[string]string{}
	for _, opt := range o.options {
		opt = strings.TrimSpace(opt)
		key, value, isKV := strings.Cut(opt, "=")
		switch {
		case opt == "" || isIgnoredOption(opt):
			continue
		case !isKV || !isOptionFlag(key):
			keep = append(keep, opt)
			continue
		}

		if value == "" {
			return withHints(usageErrorf("empty value for mount option %s=", key),
				"give it a value, or leave the option out")
		}
		f := cmd.Flags().Lookup(key)
		if f == nil {
			return withHints(usageErrorf("mount option %s= is not supported by this coffer", key),
				"run 'coffer mount --help' for the options")
		}
		prev, again := seen[key]
		if again && prev != value {
			return withHints(usageErrorf("mount option %s= given twice, as %q and %q", key, prev, value),
				"give it once")
		}
		if !again && f.Changed && f.Value.String() != value {
			return usageErrorf("mount option %s= and flag --%s disagree", key, key)
		}
		seen[key] = value
		o.valueOption = true
		if err := cmd.Flags().Set(key, value); err != nil {
			return usageErrorf("invalid mount option %s=: %v", key, err)
		}
	}
	o.options = keep
	return nil
}

func isOptionFlag(key string) bool {
	for _, k := range optionFlags {
		if k == key {
			return true
		}
	}
	return false
}
