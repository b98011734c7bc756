//go:build linux

package main

import (
	"slices"
	"time"
)

// resultKey names one cell of the results: a phase of a file system on a
// backing.
type resultKey struct {
	backing, target, phase string
}

// results collects the measurements of a run.
type results struct {
	values map[resultKey][]float64 // one per round, in round order
	cpu    map[resultKey][]float64 // daemon CPU seconds during the measurement, per round
	rss    map[resultKey]int64     // peak RSS of the measured mount, max over rounds, bytes
	loads  []float64               // 1-minute load average at the start of every step
	rot    map[string]rotateSample // the ROTATE section, by backing
}

func newResults() *results {
	return &results{values: map[resultKey][]float64{}, cpu: map[resultKey][]float64{}, rss: map[resultKey]int64{},
		rot: map[string]rotateSample{}}
}

// sample is the outcome of one step.
type sample struct {
	value float64       // the phase's result, in its unit
	cpu   time.Duration // the daemon's CPU time during the measurement
	rss   int64         // the daemon's peak RSS, bytes
	load  float64       // 1-minute load average at the start
}

// add records one step.
func (r *results) add(k resultKey, s sample) {
	r.values[k] = append(r.values[k], s.value)
	r.cpu[k] = append(r.cpu[k], s.cpu.Seconds())
	r.rss[k] = max(r.rss[k], s.rss)
	r.loads = append(r.loads, s.load)
}

// medianCPU returns the median daemon CPU seconds of k.
func (r *results) medianCPU(k resultKey) (float64, bool) {
	v := r.cpu[k]
	if len(v) == 0 {
		return 0, false
	}
	return median(v), true
}

// median returns the median of k's values and whether there are any.
func (r *results) median(k resultKey) (float64, bool) {
	v := r.values[k]
	if len(v) == 0 {
		return 0, false
	}
	return median(v), true
}

// peakRSS returns the largest peak RSS of a file system on a backing over
// the given phases (all phases if none are given).
func (r *results) peakRSS(backing, target string, phases ...string) (int64, bool) {
	var peak int64
	found := false
	for k, v := range r.rss {
		if k.backing != backing || k.target != target {
			continue
		}
		if len(phases) > 0 && !slices.Contains(phases, k.phase) {
			continue
		}
		peak, found = max(peak, v), true
	}
	return peak, found
}

// median returns the median of xs, which must not be empty.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// speedRatio returns how many times faster a is than b for a phase: a/b for
// rates, b/a for durations.
func speedRatio(p phase, a, b float64) float64 {
	if p.higherIsBetter() {
		return a / b
	}
	return b / a
}
