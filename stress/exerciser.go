//go:build linux

package stress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

// Config configures one exerciser worker.
type Config struct {
	Dir     string // directory in the file system under test
	Ref     string // reference directory on a trusted file system
	Prefix  string // prefix of the worker's file names
	Seed    uint64
	Ops     int
	Files   int   // files driven at once
	MaxSize int64 // the generator keeps files below this size

	// FullEvery is how often, in ops, the touched file is read whole
	// through a new descriptor and compared; every op compares the size
	// and the blocks around the range it touched. 1 compares whole files
	// after every op.
	FullEvery int

	// ShrinkReplays and ShrinkTime bound the minimisation of a failure.
	ShrinkReplays int
	ShrinkTime    time.Duration

	// Out receives the failure report and the minimal operation log;
	// Save, if set, is a file to write the minimal log to.
	Out  io.Writer
	Save string

	// Keep leaves the files in place after a run without mismatch, so that
	// a caller can compare them again, after a remount for instance.
	Keep bool

	// fault, if set, applies ops to the side under test instead of
	// side.apply; tests use it to plant a bug in a plain directory and
	// check the minimiser.
	fault func(s *side, o Op, data []byte) result
}

// Mismatch is the first difference between the two sides.
type Mismatch struct {
	Step int // index of the op in the sequence that ran
	Op   Op
	What string
}

// Error implements error.
func (m *Mismatch) Error() string {
	return fmt.Sprintf("op %d (%s): %s", m.Step, m.Op, m.What)
}

// Report is the outcome of a worker's run.
type Report struct {
	Ops      int           // ops run, including a failing one
	Counts   [numKinds]int // ops run per kind
	Full     int           // whole-file comparisons
	Elapsed  time.Duration
	Err      error     // a failure to set up, not a mismatch
	Mismatch *Mismatch // the first difference, nil if none

	// Reproduced tells whether a replay of the log alone failed too;
	// Minimal is then the shrunk sequence, on MinimalFiles files, found in
	// Replays replays. Otherwise Last holds the ops before the failure.
	Reproduced   bool
	Minimal      []Op
	MinimalFiles int
	Replays      int
	Last         []Op
}

// pair drives the two sides of one run.
type pair struct {
	ref, sut *side
	cfg      *Config
	full     int
}

func (c *Config) openPair(prefix string, files int) (*pair, error) {
	ref, err := openSide("reference", c.Ref, prefix, files)
	if err != nil {
		return nil, err
	}
	sut, err := openSide("under test", c.Dir, prefix, files)
	if err != nil {
		ref.remove()
		return nil, err
	}
	return &pair{ref: ref, sut: sut, cfg: c}, nil
}

// remove deletes both sides' files.
func (p *pair) remove() {
	p.ref.remove()
	p.sut.remove()
}

// step applies o to both sides and compares what they return, the file's
// size, the blocks around the range o touched and, if full, the whole file.
func (p *pair) step(i int, o Op, full bool) *Mismatch {
	data := o.data()
	want := p.ref.apply(o, data)
	var got result
	if p.cfg.fault != nil {
		got = p.cfg.fault(p.sut, o, data)
	} else {
		got = p.sut.apply(o, data)
	}

	mismatch := func(format string, args ...any) *Mismatch {
		return &Mismatch{Step: i, Op: o, What: fmt.Sprintf(format, args...)}
	}
	if want.n != got.n || want.err != got.err {
		return mismatch("reference returned %v, under test %v", want, got)
	}
	if !bytes.Equal(want.data, got.data) {
		return mismatch("read %s", diff(want.data, got.data, window(o, 0, 0).lo))
	}
	if what := p.compareFile(o, full); what != "" {
		return mismatch("%s", what)
	}
	return nil
}

// compareFile compares the size of o's file and the blocks around the range
// o touched, or the whole file.
func (p *pair) compareFile(o Op, full bool) string {
	ws, err := p.ref.size(o.File)
	if err != nil {
		return err.Error()
	}
	gs, err := p.sut.size(o.File)
	if err != nil {
		return err.Error()
	}
	if ws != gs {
		return fmt.Sprintf("size is %d, want %d", gs, ws)
	}
	if full {
		return p.compareWhole(o.File)
	}

	w := window(o, ws, BlockSize)
	if w.hi <= w.lo {
		return ""
	}
	want := preadAll(p.ref.files[o.File].ro, w.hi-w.lo, w.lo)
	got := preadAll(p.sut.files[o.File].ro, w.hi-w.lo, w.lo)
	if want.err != got.err || !bytes.Equal(want.data, got.data) {
		return fmt.Sprintf("contents around the op (%v, %v): %s", want, got,
			diff(want.data, got.data, w.lo))
	}
	return ""
}

// compareWhole reads file i of both sides through new descriptors.
func (p *pair) compareWhole(i int) string {
	p.full++
	want, wsize, err := p.ref.readWhole(i)
	if err != nil {
		return err.Error()
	}
	got, gsize, err := p.sut.readWhole(i)
	if err != nil {
		return err.Error()
	}
	if wsize != gsize {
		return fmt.Sprintf("stat size is %d, want %d", gsize, wsize)
	}
	if !bytes.Equal(want, got) {
		return "whole file " + diff(want, got, 0)
	}
	return ""
}

// span is a byte range [lo, hi).
type span struct{ lo, hi int64 }

// window returns the range o touched in a file now of size size, widened
// by pad on both sides to block boundaries and cut to the file.
func window(o Op, size, pad int64) span {
	var s span
	switch o.Kind {
	case Write, Allocate, Read, MmapRead, MmapWrite:
		s = span{o.Off, o.Off + o.Len}
	case Append:
		s = span{size - o.Len, size}
	case Truncate:
		s = span{o.Off - 1, o.Off}
	default:
		return span{}
	}
	if o.Kind == MmapRead || o.Kind == MmapWrite {
		s = span{0, size} // the mapped range depends on the size at the time
	}
	if pad == 0 {
		return s
	}
	s.lo = max(0, (s.lo-pad)/BlockSize*BlockSize)
	s.hi = min(size, (s.hi+pad+BlockSize-1)/BlockSize*BlockSize)
	return s
}

// diff describes how got differs from want; base is the offset of want[0].
func diff(want, got []byte, base int64) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	if i == len(want) && i == len(got) {
		return "is equal"
	}
	n := 0
	for j := i; j < len(want) && j < len(got); j++ {
		if want[j] != got[j] {
			n++
		}
	}
	return fmt.Sprintf("differs from offset %d (block %d): %d bytes read, want %d; %d differing bytes",
		base+int64(i), (base+int64(i))/BlockSize, len(got), len(want), n)
}

// Run runs one worker: cfg.Ops seeded operations on cfg.Files files of
// both directories, compared after every op. On a mismatch it replays the
// log to shrink it and writes the report to cfg.Out.
func Run(cfg Config) *Report {
	start := time.Now()
	rep := &Report{}
	defer func() { rep.Elapsed = time.Since(start) }()

	p, err := cfg.openPair(cfg.Prefix, cfg.Files)
	if err != nil {
		rep.Err = err
		return rep
	}
	g := newGenerator(cfg.Seed, cfg.Files, cfg.MaxSize)
	var log []Op
	for i := 0; i < cfg.Ops; i++ {
		o := g.next(func(f int) int64 { s, _ := p.ref.size(f); return s })
		log = append(log, o)
		rep.Ops++
		rep.Counts[o.Kind]++
		full := cfg.FullEvery > 0 && (i+1)%cfg.FullEvery == 0
		if m := p.step(i, o, full); m != nil {
			rep.Mismatch = m
			break
		}
	}
	if rep.Mismatch == nil {
		rep.Mismatch = p.finish(len(log))
	}
	rep.Full = p.full
	if rep.Mismatch != nil {
		_ = p.ref.close()
		_ = p.sut.close()
		cfg.shrink(rep, log)
		return rep
	}
	if !cfg.Keep {
		p.remove()
	}
	return rep
}

// finish closes both sides, comparing the close results, and compares every
// file whole.
func (p *pair) finish(step int) *Mismatch {
	werr, gerr := p.ref.close(), p.sut.close()
	if (werr == nil) != (gerr == nil) {
		return &Mismatch{Step: step, Op: Op{Kind: Reopen},
			What: fmt.Sprintf("closing: reference %v, under test %v", werr, gerr)}
	}
	for i := range p.ref.files {
		if what := p.compareWhole(i); what != "" {
			return &Mismatch{Step: step, Op: Op{Kind: Reopen, File: i}, What: "at the end: " + what}
		}
	}
	return nil
}

// replay runs ops on new files and returns the first mismatch. It compares
// whole files after every op only if c.FullEvery is 1, and at the end.
func (c *Config) replay(ops []Op, files, attempt int) (*Mismatch, error) {
	p, err := c.openPair(fmt.Sprintf("%sreplay%d-", c.Prefix, attempt), files)
	if err != nil {
		return nil, err
	}
	defer p.remove()
	for i, o := range ops {
		if m := p.step(i, o, c.FullEvery == 1); m != nil {
			return m, nil
		}
	}
	return p.finish(len(ops)), nil
}

// ErrNotReproduced reports a failure that did not happen again when the
// operation log was replayed alone.
var ErrNotReproduced = errors.New("failure did not reproduce in a replay of the operation log")
