//go:build linux

package main

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// Markers around the generated part of the report file; the text outside
// them is kept.
const (
	beginMarker = "<!-- coffer-bench results: begin (generated; edit outside the markers) -->"
	endMarker   = "<!-- coffer-bench results: end -->"
)

// Targets of issue 7, as speed ratios (greater is faster for coffer).
const (
	minVsGocryptfs     = 1.0
	minVsGocryptfsData = 1.2       // WRITE and READ
	maxVsLoopbackMeta  = 1.3       // LS, RM, UNTAR: coffer's time / loopback's time
	maxUntarRSS        = 100 << 20 // bytes
)

var (
	dataPhases = []string{phaseWrite, phaseRead}
	metaPhases = []string{phaseUntar, phaseLs, phaseRm}
)

// report prints the results and, unless -out is empty, writes them into
// the report file.
func (r *runner) report(m machine, elapsed time.Duration) error {
	var b strings.Builder
	writeReport(&b, r.opts, m, r.res, elapsed)
	fmt.Print(b.String())
	if r.opts.out == "" {
		return nil
	}
	if err := updateReportFile(r.opts.out, b.String()); err != nil {
		return err
	}
	infof("updated %s", r.opts.out)
	return nil
}

// writeReport renders the results as Markdown.
func writeReport(w io.Writer, opts *options, m machine, res *results, elapsed time.Duration) {
	fmt.Fprintf(w, "## Run of %s\n\n", m.date.Format("2006-01-02 15:04 MST"))
	writeMachine(w, opts, m, res, elapsed)
	for _, b := range opts.backings {
		fmt.Fprintf(w, "\n### %s backing\n\n", b)
		writeMedians(w, opts, res, b)
		fmt.Fprintln(w)
		writeTargets(w, opts, res, b)
		fmt.Fprintln(w)
		writeCPU(w, opts, res, b)
	}
	writeRotation(w, opts, res.rot)
	fmt.Fprintf(w, "\n### Every round\n\n")
	writeRounds(w, opts, res)
}

// writeMachine writes the machine description and the settings.
func writeMachine(w io.Writer, opts *options, m machine, res *results, elapsed time.Duration) {
	fmt.Fprintf(w, "- Machine: %d CPUs (%s), %s memory, Linux %s\n", m.cpus, m.cpuModel, m.memory, m.kernel)
	fmt.Fprintf(w, "- Software: %s; loopback and benchmark (%s, go-fuse %s); %s\n",
		m.coffer, m.goVersion, m.goFuse, m.gocryptfs)
	for _, b := range opts.backings {
		fmt.Fprintf(w, "- Backing %s: %s\n", b, m.backings[b])
	}
	fmt.Fprintf(w, "- Free page reporting to the host: %s\n", m.pageReporting.describe())
	lo, med, hi := loadStats(res.loads)
	fmt.Fprintf(w, "- Load: 1-minute load average at the start of each step: min %.2f, median %.2f, max %.2f\n",
		lo, med, hi)
	fmt.Fprintf(w, "- Settings: %d round(s), WRITE/READ %d MiB in %d KiB requests, RANDREAD %d MiB for %v, "+
		"tree %s; page cache dropped between phases: %v; run took %v\n",
		opts.rounds, opts.writeSize>>20, chunkSize>>10, opts.randSize>>20, opts.randDuration,
		cmp.Or(opts.tree, "none"), yesNo(m.dropped), elapsed.Round(time.Second))
}

// loadStats returns the minimum, median and maximum of the loads.
func loadStats(loads []float64) (lo, med, hi float64) {
	if len(loads) == 0 {
		return 0, 0, 0
	}
	return slices.Min(loads), median(loads), slices.Max(loads)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// writeMedians writes the table of medians of one backing with coffer's
// speed ratios.
func writeMedians(w io.Writer, opts *options, res *results, backing string) {
	ratios := ratioColumns(opts)
	head := append([]string{"phase", "unit"}, opts.targets...)
	for _, o := range ratios {
		head = append(head, "coffer/"+o)
	}
	writeRow(w, head)
	writeRow(w, slices.Repeat([]string{"---:"}, len(head)))

	all := phases()
	for _, name := range opts.phases {
		p := all[name]
		row := []string{p.name, p.unit}
		for _, t := range opts.targets {
			row = append(row, formatValue(res, resultKey{backing, t, name}))
		}
		for _, o := range ratios {
			row = append(row, formatRatio(p, res, backing, o))
		}
		writeRow(w, row)
	}
	writeRSSRow(w, opts, res, backing, "peak RSS, UNTAR", len(ratios), phaseUntar)
	writeRSSRow(w, opts, res, backing, "peak RSS, any phase", len(ratios))
	fmt.Fprintf(w, "\nMedians of %d round(s). Ratios are speed ratios: above 1 means coffer is faster. "+
		"loopback is go-fuse's loopback with kernel passthrough off (the FUSE floor); loopback-pt has it "+
		"on (reference only).\n", opts.rounds)
}

// writeCPU writes the table of the daemons' median CPU time per phase, a
// measure that load from other processes disturbs less than elapsed time.
func writeCPU(w io.Writer, opts *options, res *results, backing string) {
	ratios := ratioColumns(opts)
	head := append([]string{"daemon CPU", "unit"}, opts.targets...)
	for _, o := range ratios {
		head = append(head, o+"/coffer")
	}
	writeRow(w, head)
	writeRow(w, slices.Repeat([]string{"---:"}, len(head)))
	for _, name := range opts.phases {
		row := []string{name, "s"}
		for _, t := range opts.targets {
			v, ok := res.medianCPU(resultKey{backing, t, name})
			row = append(row, formatFloat(v, ok))
		}
		for _, o := range ratios {
			c, ok1 := res.medianCPU(resultKey{backing, targetCoffer, name})
			v, ok2 := res.medianCPU(resultKey{backing, o, name})
			row = append(row, formatCPURatio(v, c, ok1 && ok2))
		}
		writeRow(w, row)
	}
	fmt.Fprintf(w, "\nCPU time (user + system) of the mount process during each phase, median of the "+
		"rounds. Ratios above 1 mean coffer used less CPU.\n")
}

func formatCPURatio(other, coffer float64, ok bool) string {
	if !ok || coffer == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", other/coffer)
}

// ratioColumns returns the file systems coffer is compared with.
func ratioColumns(opts *options) []string {
	if !slices.Contains(opts.targets, targetCoffer) {
		return nil
	}
	var out []string
	for _, o := range []string{targetGocryptfs, targetLoopback} {
		if slices.Contains(opts.targets, o) {
			out = append(out, o)
		}
	}
	return out
}

// writeRSSRow writes a peak RSS row in MiB over the given phases.
func writeRSSRow(w io.Writer, opts *options, res *results, backing, label string, ratios int, phases ...string) {
	if len(phases) > 0 && !slices.Contains(opts.phases, phases[0]) {
		return
	}
	row := []string{label, "MiB"}
	for _, t := range opts.targets {
		v, ok := res.peakRSS(backing, t, phases...)
		row = append(row, formatMiB(v, ok))
	}
	writeRow(w, append(row, slices.Repeat([]string{""}, ratios)...))
}

func formatMiB(v int64, ok bool) string {
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.0f", float64(v)/(1<<20))
}

// formatValue formats the median of a cell.
func formatValue(res *results, k resultKey) string {
	v, ok := res.median(k)
	return formatFloat(v, ok)
}

// formatFloat formats a measurement with three or so significant digits.
func formatFloat(v float64, ok bool) string {
	if !ok {
		return "–"
	}
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// formatRatio formats coffer's speed ratio against other for a phase.
func formatRatio(p phase, res *results, backing, other string) string {
	r, ok := ratio(p, res, backing, other)
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.2f×", r)
}

// ratio returns coffer's median speed ratio against other.
func ratio(p phase, res *results, backing, other string) (float64, bool) {
	c, ok1 := res.median(resultKey{backing, targetCoffer, p.name})
	o, ok2 := res.median(resultKey{backing, other, p.name})
	if !ok1 || !ok2 || c == 0 || o == 0 {
		return 0, false
	}
	return speedRatio(p, c, o), true
}

// writeRow writes one Markdown table row.
func writeRow(w io.Writer, cells []string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
}

// writeTargets checks the targets of issue 7 on one backing.
func writeTargets(w io.Writer, opts *options, res *results, backing string) {
	all := phases()
	if slices.Contains(opts.targets, targetGocryptfs) {
		for _, name := range opts.phases {
			want := minVsGocryptfs
			if slices.Contains(dataPhases, name) {
				want = minVsGocryptfsData
			}
			if r, ok := ratio(all[name], res, backing, targetGocryptfs); ok {
				writeCheck(w, r >= want, "%s vs gocryptfs: %.2f× (target ≥ %.1f×)", name, r, want)
			}
		}
	}
	if slices.Contains(opts.targets, targetLoopback) {
		for _, name := range metaPhases {
			if r, ok := ratio(all[name], res, backing, targetLoopback); ok {
				writeCheck(w, 1/r <= maxVsLoopbackMeta, "%s time vs loopback: %.2f× (target ≤ %.1f×)",
					name, 1/r, maxVsLoopbackMeta)
			}
		}
	}
	if v, ok := res.peakRSS(backing, targetCoffer, phaseUntar); ok {
		writeCheck(w, v < maxUntarRSS, "coffer peak RSS during UNTAR: %.0f MiB (target < %d MiB)",
			float64(v)/(1<<20), maxUntarRSS>>20)
	}
}

// writeCheck writes one line of the target checklist.
func writeCheck(w io.Writer, ok bool, format string, args ...any) {
	mark := "misses"
	if ok {
		mark = "holds"
	}
	fmt.Fprintf(w, "- %s: %s\n", mark, fmt.Sprintf(format, args...))
}

// writeRounds lists every measurement, for judging the spread.
func writeRounds(w io.Writer, opts *options, res *results) {
	writeRow(w, []string{"backing", "phase", "file system", "unit", "every round (in order)", "daemon CPU s"})
	writeRow(w, []string{"---", "---", "---", "---", "---", "---"})
	all := phases()
	for _, b := range opts.backings {
		for _, name := range opts.phases {
			for _, t := range opts.targets {
				k := resultKey{b, t, name}
				writeRow(w, []string{b, name, t, all[name].unit, joinFloats(res.values[k]), joinFloats(res.cpu[k])})
			}
		}
	}
}

// joinFloats lists values with four significant digits.
func joinFloats(vs []float64) string {
	cells := make([]string, len(vs))
	for i, v := range vs {
		cells[i] = fmt.Sprintf("%.4g", v)
	}
	return strings.Join(cells, ", ")
}

// updateReportFile replaces the generated part of the Markdown file at path
// with section, creating the file or appending the markers if needed.
func updateReportFile(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("failed to read %s: %w", path, err)
	}
	out := spliceSection(string(old), section)
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	return nil
}

// spliceSection puts section between the markers of doc, replacing what was
// there; without markers it appends them.
func spliceSection(doc, section string) string {
	block := beginMarker + "\n" + section + endMarker + "\n"
	i := strings.Index(doc, beginMarker)
	j := strings.Index(doc, endMarker)
	if i < 0 || j < i {
		if doc != "" && !strings.HasSuffix(doc, "\n\n") {
			doc = strings.TrimRight(doc, "\n") + "\n\n"
		}
		return doc + block
	}
	return doc[:i] + block + strings.TrimPrefix(doc[j+len(endMarker):], "\n")
}
