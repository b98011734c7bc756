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
	for _, n := range []int{1, parallelMin - 1, parallelMin, 33, 256} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			seen := make([]atomic.Int32, n)
			require.NoError(t, forBlocks(n, func(lo, hi int) error {
				assert.Less(t, lo, hi)
				for i := lo; i < hi; i++ {
					seen[i].Add(1)
				}
				return nil
			}))
			for i := range seen {
				assert.Equal(t, int32(1), seen[i].Load(), "block %d", i)
			}
		})
	}
}

func TestForBlocksReturnsLowestError(t *testing.T) {
	errLow, errHigh := errors.New("low"), errors.New("high")
	err := forBlocks(64, func(lo, hi int) error {
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
