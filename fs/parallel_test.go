//go:build linux

package fs

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestForBlocksCoversEachBlockOnce(t *testing.T) {
	// ranges: how many pieces the request is cut into. Two CPUs never split
	// (parallelMinProcs); a piece has at least 8 blocks (parallelMin/2).
	for _, c := range []struct{ procs, n, ranges int }{
		{1, 256, 1},
		{2, 256, 1},
		{4, 1, 1},
		{4, 15, 1},
		{4, 16, 2},
		{4, 33, 4},
		{4, 256, 4},
		{7, 256, 7},
		{64, 16, 2},
		{64, 256, 32},
	} {
		t.Run(fmt.Sprintf("procs=%d/n=%d", c.procs, c.n), func(t *testing.T) {
			seen := make([]atomic.Int32, c.n)
			var calls atomic.Int32
			require.NoError(t, forBlocksOn(c.procs, c.n, func(lo, hi int) error {
				calls.Add(1)
				assert.Less(t, lo, hi)
				for i := lo; i < hi; i++ {
					seen[i].Add(1)
				}
				return nil
			}))
			for i := range seen {
				assert.Equal(t, int32(1), seen[i].Load(), "block %d", i)
			}
			assert.Equal(t, int32(c.ranges), calls.Load(), "ranges")
		})
	}
}

func TestForBlocksReturnsLowestError(t *testing.T) {
	errLow, errHigh := errors.New("low"), errors.New("high")
	err := forBlocksOn(parallelMinProcs, 64, func(lo, hi int) error {
		switch {
		case lo <= 3 && 3 < hi:
			return errLow
		case lo <= 40 && 40 < hi:
			return errHigh
		}
		return nil
	})
	assert.Equal(t, errLow, err)
}
