package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferfs/coffer/keys"
)

type configOptions struct {
	backing   string
	maxKeyAge string
}

func newConfigCommand(a *app) *cobra.Command {
	var opts configOptions
	cmd := &cobra.Command{
		Use:   "config BACKING --max-key-age AGE",
		Short: "Set a volume's key policy",
		Long: `Set the key policy recorded in BACKING/.coffer/volume.json. No key is needed.

--max-key-age AGE (days, as 90d, or "off") is how long the primary ring key
may be used: past it, coffer status and each mount warn, and
"coffer rotate --if-due" rotates (for a timer; see contrib/systemd).`,
		Example: `  coffer config /srv/app.enc --max-key-age 90d
  coffer config /srv/app.enc --max-key-age off`,
		Args: exactArgs("BACKING"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.backing = args[0]
			if !cmd.Flags().Changed("max-key-age") {
				return withHints(usageErrorf("nothing to set"), "pass --max-key-age AGE")
			}
			return runConfig(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().StringVar(&opts.maxKeyAge, "max-key-age", "",
		`maximum age of the primary ring key, in days (90d), or "off"`)
	return cmd
}

func runConfig(_ context.Context, a *app, opts configOptions) error {
	days, err := parseDays(opts.maxKeyAge)
	if err != nil {
		return err
	}
	if _, err := readConfigToWrite(opts.backing); err != nil {
		return err
	}
	cfg, err := keys.UpdateConfig(opts.backing, func(c *keys.Config) error {
		c.Policy = nil
		if days > 0 {
			c.Policy = &keys.Policy{MaxKeyAgeDays: days}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("failed to set the key policy: %w", err)
	}
	if days == 0 {
		fmt.Fprintf(a.stdout, "volume %s: no maximum key age\n", cfg.VolumeID)
		return nil
	}
	fmt.Fprintf(a.stdout, "volume %s: maximum key age %d days", cfg.VolumeID, days)
	if cfg.RotationDue(time.Now()) {
		fmt.Fprint(a.stdout, " (the primary key is older: a rotation is due)")
	}
	fmt.Fprintln(a.stdout)
	return nil
}

// parseDays parses "90d", "90" or "off".
func parseDays(s string) (int, error) {
	if s == "off" || s == "0" || s == "0d" {
		return 0, nil
	}
	n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
	if err != nil || n < 1 || n > keys.MaxPolicyDays {
		return 0, withHints(usageErrorf("invalid --max-key-age %q", s),
			fmt.Sprintf("give a number of days from 1 to %d, such as 90d, or off (or 0) for no maximum",
				keys.MaxPolicyDays))
	}
	return n, nil
}
