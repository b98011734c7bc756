//go:build linux

package stress

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// lastOps is how many ops a report shows when a failure did not reproduce.
const lastOps = 40

// shrink confirms a failure by replaying its log on new files, then
// shrinks the log, first to the failing file's ops and then by delta
// debugging, and reports the result on c.Out.
func (c *Config) shrink(rep *Report, log []Op) {
	fmt.Fprintf(c.Out, "exerciser: MISMATCH in the worker with seed %d (files %s*) at %v\n",
		c.Seed, c.Prefix, rep.Mismatch)
	b := &budget{replays: c.ShrinkReplays, deadline: time.Now().Add(c.ShrinkTime)}
	fails := func(files int) func([]Op) bool {
		return func(ops []Op) bool {
			rep.Replays++
			m, err := c.replay(ops, files, rep.Replays)
			return err == nil && m != nil
		}
	}

	if !b.spend() || !fails(c.Files)(log) {
		rep.Last = only(log, rep.Mismatch.Op.File)
		rep.Last = rep.Last[max(0, len(rep.Last)-lastOps):]
		fmt.Fprintf(c.Out, "exerciser: %v; the last ops on file %d, renumbered 0, were:\n%s",
			ErrNotReproduced, rep.Mismatch.Op.File, formatOps(rep.Last))
		return
	}
	rep.Reproduced = true
	ops, files := log, c.Files
	if one := only(log, rep.Mismatch.Op.File); b.spend() && fails(1)(one) {
		ops, files = one, 1
	}
	rep.Minimal, rep.MinimalFiles = minimize(ops, fails(files), b), files
	c.reportMinimal(rep, len(log))
}

// reportMinimal writes the minimal log and how it fails.
func (c *Config) reportMinimal(rep *Report, total int) {
	fmt.Fprintf(c.Out, "exerciser: minimal operation log: %d of %d ops on %d file(s), found in %d replays\n%s",
		len(rep.Minimal), total, rep.MinimalFiles, rep.Replays, formatOps(rep.Minimal))
	m, err := c.replay(rep.Minimal, rep.MinimalFiles, rep.Replays+1)
	switch {
	case err != nil:
		fmt.Fprintf(c.Out, "exerciser: failed to replay the minimal log: %v\n", err)
	case m != nil:
		fmt.Fprintf(c.Out, "exerciser: the minimal log fails at %v\n", m)
	}
	if c.Save == "" {
		return
	}
	if err := os.WriteFile(c.Save, []byte(formatOps(rep.Minimal)), 0o644); err != nil {
		fmt.Fprintf(c.Out, "exerciser: failed to save the minimal log: %v\n", err)
		return
	}
	fmt.Fprintf(c.Out, "exerciser: minimal log saved to %s; replay it with -replay %s\n", c.Save, c.Save)
}

// only returns the ops on file f, renumbered to file 0.
func only(ops []Op, f int) []Op {
	var out []Op
	for _, o := range ops {
		if o.File == f {
			o.File = 0
			out = append(out, o)
		}
	}
	return out
}

// formatOps formats ops one per line, as ParseOp reads them.
func formatOps(ops []Op) string {
	var b strings.Builder
	for _, o := range ops {
		b.WriteString(o.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// parseOps reads an operation log; blank lines and lines starting with #
// are skipped.
func parseOps(text string) ([]Op, error) {
	var ops []Op
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		o, err := ParseOp(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		ops = append(ops, o)
	}
	return ops, nil
}

// summary is the line a worker prints when it ends without a mismatch.
func (r *Report) summary(cfg Config) string {
	var kinds []string
	for k, n := range r.Counts {
		if n > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", Kind(k), n))
		}
	}
	return fmt.Sprintf("exerciser: seed %d (files %s*): %d ops in %v, %d whole-file comparisons, no mismatch (%s)",
		cfg.Seed, cfg.Prefix, r.Ops, r.Elapsed.Round(time.Millisecond), r.Full, strings.Join(kinds, ", "))
}
