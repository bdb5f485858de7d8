package main

import (
	"math"
	"testing"
)

func TestBucketsQuantile(t *testing.T) {
	earlier := buckets{bounds: []float64{1, 2, 5}, counts: []float64{5, 5, 5}, total: 5}
	now := buckets{bounds: []float64{1, 2, 5}, counts: []float64{15, 65, 105}, total: 105}
	b := now.minus(earlier) // 10 up to 1, 50 in (1, 2], 40 in (2, 5]
	if b.total != 100 {
		t.Fatalf("total %v, want 100", b.total)
	}
	past := buckets{bounds: b.bounds, counts: b.counts, total: 110} // 10 past the last bound
	for _, c := range []struct {
		b    buckets
		q    float64
		want float64
	}{
		{b, 0.05, 0.5},   // within the first bucket, from 0
		{b, 0.5, 1.8},    // 1 + 1 × 40/50
		{b, 0.99, 4.925}, // 2 + 3 × 39/40
		{b, 0.1, 1},      // the first bucket's bound exactly
		{past, 0.99, 5},  // past the last bound: that bound
		{past, 0.5, 1.9}, // rank 55: 1 + 1 × 45/50
	} {
		if got := c.b.quantile(c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("quantile(%v) of %v/%v = %v, want %v", c.q, c.b.counts, c.b.total, got, c.want)
		}
	}
}

func TestBucketsOver(t *testing.T) {
	b := buckets{bounds: []float64{1, 2, 5}, counts: []float64{10, 60, 100}, total: 110}
	if got, err := b.over(1.5 + 0.5); err != nil || got != 50 {
		t.Errorf("over(2) = %v, %v; want 50", got, err)
	}
	if _, err := b.over(3); err == nil {
		t.Error("over(3): no error for a bound that is not a bucket's")
	}
	if got, err := (buckets{}).over(3); err != nil || got != 0 {
		t.Errorf("no observations: over(3) = %v, %v; want 0", got, err)
	}
}
