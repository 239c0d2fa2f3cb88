package bench

import (
	"math"
	"testing"
	"time"
)

func TestHistogramBucketsCoverEveryValueWithinOnePercent(t *testing.T) {
	for _, v := range []uint64{0, 1, 255, 256, 257, 1000, 123_456, 1 << 40, math.MaxInt64} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d, outside [0, %d)", v, i, histBuckets)
		}
		got := histValue(i)
		if diff := math.Abs(float64(got)-float64(v)) / math.Max(1, float64(v)); diff > 0.008 {
			t.Errorf("value %d lands in a bucket worth %d, %.2f%% off", v, got, diff*100)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i)*time.Microsecond, 1)
	}
	var o histogram
	o.add(time.Second, 10)
	h.merge(&o)
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 505 * time.Microsecond}, {0.98, 990 * time.Microsecond}, {1, time.Second}} {
		got := h.quantile(c.q)
		if math.Abs(float64(got-c.want))/float64(c.want) > 0.01 {
			t.Errorf("quantile(%v) = %v, want about %v", c.q, got, c.want)
		}
	}
}
