//go:build linux

package stress

import (
	"time"
)

// budget bounds the work of a minimisation: a number of replays and a
// deadline, whichever comes first.
type budget struct {
	replays  int
	deadline time.Time
}

// spend takes one replay from the budget and reports whether there was one.
func (b *budget) spend() bool {
	if b.exhausted() {
		return false
	}
	b.replays--
	return true
}

// exhausted reports whether the budget is spent.
func (b *budget) exhausted() bool {
	return b.replays <= 0 || time.Now().After(b.deadline)
}

// minimize shrinks ops, a sequence for which fails is true, to a smaller
// one for which fails is still true, by delta debugging: it splits the
// sequence into n chunks and tries each chunk alone, then each complement,
// keeping the first that still fails and doubling n when none does. The
// result is 1-minimal (no single op can be removed) if the budget lasts.
func minimize[T any](ops []T, fails func([]T) bool, b *budget) []T {
	n := 2
	for len(ops) >= 2 {
		chunks := split(ops, n)
		if next, ok := firstFailing(chunks, fails, b); ok {
			ops, n = next, 2
			continue
		}
		// With two chunks the complements are the chunks themselves.
		if len(chunks) > 2 {
			if next, ok := firstFailing(complements(chunks), fails, b); ok {
				ops, n = next, max(len(chunks)-1, 2)
				continue
			}
		}
		if len(chunks) >= len(ops) || b.exhausted() {
			return ops
		}
		n = min(2*len(chunks), len(ops))
	}
	return ops
}

// firstFailing returns the first candidate for which fails is true.
func firstFailing[T any](candidates [][]T, fails func([]T) bool, b *budget) ([]T, bool) {
	for _, c := range candidates {
		if !b.spend() {
			return nil, false
		}
		if fails(c) {
			return c, true
		}
	}
	return nil, false
}

// split cuts s into n chunks of nearly equal length (fewer if s is short).
func split[T any](s []T, n int) [][]T {
	n = min(n, len(s))
	chunks := make([][]T, 0, n)
	for i := range n {
		lo, hi := i*len(s)/n, (i+1)*len(s)/n
		chunks = append(chunks, s[lo:hi])
	}
	return chunks
}

// complements returns, for each chunk, the concatenation of all the others.
func complements[T any](chunks [][]T) [][]T {
	out := make([][]T, len(chunks))
	for i := range chunks {
		for j, c := range chunks {
			if j != i {
				out[i] = append(out[i], c...)
			}
		}
	}
	return out
}
