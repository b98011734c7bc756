package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"
)

// barProgress shows how far a long scan is: a bar redrawn in place on a
// terminal, a plain line every progressEvery otherwise (logs, journals).
type barProgress struct {
	w      io.Writer
	what   string
	total  int
	tty    bool
	start  time.Time
	last   time.Time
	every  time.Duration
	latest int
}

const progressEvery = 5 * time.Second

func newBarProgress(w io.Writer, what string, total int) *barProgress {
	f, ok := w.(*os.File)
	tty := ok && term.IsTerminal(int(f.Fd()))
	every := progressEvery
	if tty {
		every = 100 * time.Millisecond
	}
	now := time.Now()
	return &barProgress{w: w, what: what, total: total, tty: tty, start: now, last: now, every: every}
}

// update records that done items are finished.
func (p *barProgress) update(done int) {
	p.latest = done
	if now := time.Now(); now.Sub(p.last) >= p.every {
		p.last = now
		p.show(done, now)
	}
}

// done shows the final count.
func (p *barProgress) done() {
	p.show(p.latest, time.Now())
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func (p *barProgress) show(done int, now time.Time) {
	total := max(p.total, done)
	elapsed := now.Sub(p.start)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	pct := 100
	if total > 0 {
		pct = done * 100 / total
	}
	if !p.tty {
		fmt.Fprintf(p.w, "coffer: rotate: %s %d/%d files (%d%%), %.0f files/s, ETA %s\n",
			p.what, done, total, pct, rate, eta)
		return
	}
	const width = 30
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < pct*width/100 {
			bar[i] = '#'
		}
	}
	fmt.Fprintf(p.w, "\r%s [%s] %d/%d files %3d%% %6.0f/s ETA %-8s", p.what, bar, done, total,
		pct, rate, eta)
}
