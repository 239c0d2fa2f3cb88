package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/agentmarket/agentmarket/httpapi/httpapitest"
)

// TestHealthzChecksTheStore checks that /healthz answers 200 while the
// market store answers, and 503 store_unavailable once it does not, so a
// load balancer takes the node out of rotation.
func TestHealthzChecksTheStore(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{})
	if r := send(t, rawRequest(t, "GET", m.URL+"/healthz", nil, signing{})); r.status != http.StatusOK {
		t.Fatalf("healthz with the store up: %d %s", r.status, r.body)
	}
	if err := m.Store.Close(); err != nil {
		t.Fatal(err)
	}
	r := send(t, rawRequest(t, "GET", m.URL+"/healthz", nil, signing{}))
	if r.status != http.StatusServiceUnavailable || r.problem.Code != "store_unavailable" {
		t.Fatalf("healthz with the store closed: %d %s, want 503 store_unavailable", r.status, r.body)
	}
}
