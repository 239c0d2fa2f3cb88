package ledger_test

import (
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/ledgertest"
)

// TestConformance runs the ledger conformance suite against the embedded
// ledger, on a fresh data directory per case.
func TestConformance(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T, now func() time.Time) ledgertest.Ledger {
		return mustOpen(t, t.TempDir(), ledger.Options{Now: now})
	})
}
