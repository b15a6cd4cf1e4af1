package main

import (
	"math/bits"
	"sync/atomic"
)

// A log-linear latency histogram in microseconds: exact below 128 us, then 128
// sub-buckets per power of two (under 1 % error). Buckets are atomic so every
// reader goroutine records into the one histogram without a lock.
const (
	subBits    = 7
	subCount   = 1 << subBits
	maxShift   = 40
	histBucket = subCount + maxShift*subCount
)

type hist struct {
	buckets [histBucket]atomic.Uint64
	count   atomic.Uint64
	sumUs   atomic.Uint64
	maxUs   atomic.Uint64
}

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	if shift >= maxShift {
		return histBucket - 1
	}
	return subCount + shift*subCount + int(v>>uint(shift)) - subCount
}

// valueOf returns the middle of a bucket's range.
func valueOf(idx int) float64 {
	if idx < subCount {
		return float64(idx)
	}
	shift := (idx - subCount) / subCount
	low := uint64(idx-subCount-shift*subCount+subCount) << uint(shift)
	width := uint64(1) << uint(shift)
	return float64(low) + float64(width-1)/2
}

func (h *hist) record(us uint64) {
	h.buckets[bucketOf(us)].Add(1)
	h.count.Add(1)
	h.sumUs.Add(us)
	for {
		cur := h.maxUs.Load()
		if us <= cur || h.maxUs.CompareAndSwap(cur, us) {
			return
		}
	}
}

// quantile returns the q-quantile in microseconds.
func (h *hist) quantile(q float64) float64 {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q * float64(n))
	if rank >= n {
		rank = n - 1
	}
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen > rank {
			v := valueOf(i)
			if m := float64(h.maxUs.Load()); v > m {
				return m
			}
			return v
		}
	}
	return float64(h.maxUs.Load())
}
