//go:build linux

package main

import (
	"context"
	"fmt"
	"time"
)

// Phase names, as in issue 7 and the report.
const (
	phaseWrite    = "WRITE"
	phaseRead     = "READ"
	phaseRandRead = "RANDREAD"
	phaseUntar    = "UNTAR"
	phaseChecksum = "CHECKSUM"
	phaseLs       = "LS"
	phaseRm       = "RM"
)

// Units of the measurements.
const (
	unitMBps    = "MB/s"
	unitIOPS    = "IOPS"
	unitSeconds = "s"
)

// phase is one measured operation. The runner mounts the file system fresh
// for prepare (if any) and again, after dropping the caches, for measure and
// after.
type phase struct {
	name string
	unit string

	// prepare sets up what measure needs, untimed, on its own mount.
	prepare func(ctx context.Context, env *stepEnv) error
	// measure does the timed work, checks what it read, and returns the
	// result in unit.
	measure func(ctx context.Context, env *stepEnv) (float64, error)
	// after cleans up, untimed, on the measured mount.
	after func(ctx context.Context, env *stepEnv) error
}

// higherIsBetter reports whether a larger result means faster.
func (p phase) higherIsBetter() bool {
	return p.unit != unitSeconds
}

// stepEnv is what a phase works with: the mount and the data set.
type stepEnv struct {
	mnt  string
	opts *options
	data *dataSet
}

// dataSet is the data the phases write and expect back, made once per run.
type dataSet struct {
	seq  *pattern // the WRITE/READ file
	rand *pattern // the RANDREAD file
	tree *tarball // UNTAR's tarball and the tree's expected contents
}

// phases returns the phase definitions by name.
func phases() map[string]phase {
	return map[string]phase{
		phaseWrite:    {name: phaseWrite, unit: unitMBps, measure: measureWrite},
		phaseRead:     {name: phaseRead, unit: unitMBps, measure: measureRead, after: removeSeqFile},
		phaseRandRead: {name: phaseRandRead, unit: unitIOPS, prepare: prepareRandRead, measure: measureRandRead, after: removeRandFile},
		phaseUntar:    {name: phaseUntar, unit: unitSeconds, measure: measureUntar},
		phaseChecksum: {name: phaseChecksum, unit: unitSeconds, measure: measureChecksum},
		phaseLs:       {name: phaseLs, unit: unitSeconds, measure: measureLs},
		phaseRm:       {name: phaseRm, unit: unitSeconds, measure: measureRm},
	}
}

// mbPerSecond converts bytes moved in d to MB/s (10^6 bytes).
func mbPerSecond(n int64, d time.Duration) float64 {
	return float64(n) / 1e6 / d.Seconds()
}

// inPhase wraps err with the phase and file it concerns.
func inPhase(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
