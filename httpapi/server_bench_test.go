package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/agentmarket/agentmarket/httpapi"
	"github.com/agentmarket/agentmarket/httpapi/httpapitest"
	"github.com/agentmarket/agentmarket/market"
)

// BenchmarkServer measures what the server spends on one signed request,
// the client's work left out: the requests are signed before the timer
// starts and served in-process, with no network, by callers in parallel
// (16 per CPU, so that the store's group commit batches their writes, as
// under load).
// Each request still verifies its signature and writes its nonce, and a
// POST its idempotency record, to the market's SQLite store.
func BenchmarkServer(b *testing.B) {
	// The rate limit is raised out of the way: this measures capacity.
	m := httpapitest.New(b, httpapitest.Options{API: func(c *httpapi.Config) { c.RateLimit = 1e9 }})
	buyer := mustAgent(b, m.URL, "buyer", "op-buyer", market.RoleBuyer)
	for _, c := range []struct {
		name   string
		method string
		path   string
		key    market.PrivateKey
		body   func(i int) []byte
		status int
	}{
		{"GetBalance", http.MethodGet, "/v1/agents/" + string(buyer.ID) + "/balance", buyer.Key, nil, http.StatusOK},
		{"PostMint", http.MethodPost, "/v1/agents/" + string(buyer.ID) + "/mint", m.Operator,
			func(i int) []byte { return fmt.Appendf(nil, `{"amount_microcredits":%d}`, 1+i%1000) }, http.StatusOK},
	} {
		b.Run(c.name, func(b *testing.B) {
			reqs := make([]*http.Request, b.N)
			for i := range reqs {
				var body []byte
				if c.body != nil {
					body = c.body(i)
				}
				reqs[i] = rawRequest(b, c.method, m.URL+c.path, body, signing{key: c.key})
			}
			var next, failed atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w := httptest.NewRecorder()
					m.Handler.ServeHTTP(w, reqs[next.Add(1)-1])
					if w.Code != c.status {
						failed.Add(1)
					}
				}
			})
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d of %d requests failed", n, b.N)
			}
		})
	}
}
