package checker_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/checker"
)

// Each benchmark times the checker against naive recomputation of the
// answer on the same task in the same run, and reports both and their
// ratio: naive/check is how many times cheaper verifying is than redoing
// the work. Both sides include reading the JSON; the naive side decodes it
// with encoding/json, as a user checking by hand would, and redoes the work
// with the reference solver or the obvious algorithm.

// compare runs check and naive alternately and reports their mean times
// and ratio.
func compare(b *testing.B, check, naive func() error) {
	b.Helper()
	var checkTime, naiveTime time.Duration
	var n int
	for b.Loop() {
		start := time.Now()
		if err := check(); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if err := naive(); err != nil {
			b.Fatal(err)
		}
		checkTime += mid.Sub(start)
		naiveTime += time.Since(mid)
		n++
	}
	b.ReportMetric(float64(checkTime.Nanoseconds())/float64(n), "check-ns/op")
	b.ReportMetric(float64(naiveTime.Nanoseconds())/float64(n), "naive-ns/op")
	b.ReportMetric(float64(naiveTime)/float64(checkTime), "naive/check")
}

// benchSolved runs compare on a generated, solved task, with the solver
// itself as the naive baseline.
func benchSolved(b *testing.B, name string, sizes []int) {
	c := MustGet(b, name)
	for _, size := range sizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			params := MustGenerate(b, name, 1, size)
			output, _ := MustSolve(b, name, params)
			compare(b,
				func() error { return c.Check(params, output) },
				func() error {
					_, _, err := checker.Solve(name, params)
					return err
				})
		})
	}
}

func BenchmarkCheckFactor(b *testing.B) { benchSolved(b, "factor", []int{32, 48, 64}) }

func BenchmarkCheckPow(b *testing.B) { benchSolved(b, "pow", []int{8, 16}) }

func BenchmarkCheckSort(b *testing.B) {
	c := MustGet(b, "sort")
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			params := MustGenerate(b, "sort", 1, n)
			output, _ := MustSolve(b, "sort", params)
			compare(b,
				func() error { return c.Check(params, output) },
				func() error { return naiveSortCheck(params, output) })
		})
	}
}

// naiveSortCheck checks a sort by sorting the input again.
func naiveSortCheck(params, output json.RawMessage) error {
	var p struct {
		Items []int64
		Order string
	}
	var o struct{ Items []int64 }
	if err := json.Unmarshal(params, &p); err != nil {
		return err
	}
	if err := json.Unmarshal(output, &o); err != nil {
		return err
	}
	slices.Sort(p.Items)
	if p.Order == "desc" {
		slices.Reverse(p.Items)
	}
	if !slices.Equal(p.Items, o.Items) {
		return fmt.Errorf("not sorted")
	}
	return nil
}

func BenchmarkCheckMatmul(b *testing.B) {
	c := MustGet(b, "matmul")
	for _, n := range []int{16, 64, 256, 512} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			params := MustGenerate(b, "matmul", 1, n)
			output, _ := MustSolve(b, "matmul", params)
			compare(b,
				func() error { return c.Check(params, output) },
				func() error { return naiveMatmulCheck(params, output) })
		})
	}
}

// naiveMatmulCheck checks a product by recomputing it.
func naiveMatmulCheck(params, output json.RawMessage) error {
	var p struct{ A, B [][]int64 }
	var o struct{ C [][]int64 }
	if err := json.Unmarshal(params, &p); err != nil {
		return err
	}
	if err := json.Unmarshal(output, &o); err != nil {
		return err
	}
	for i, arow := range p.A {
		row := make([]int64, len(p.B[0]))
		for k, x := range arow {
			for j, y := range p.B[k] {
				row[j] += x * y
			}
		}
		if !slices.Equal(row, o.C[i]) {
			return fmt.Errorf("row %d differs", i)
		}
	}
	return nil
}
