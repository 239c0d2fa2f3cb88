package journalstore

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// FuzzApply feeds arbitrary bytes to the decoder of a journal record's
// changes. A record whose hash matches holds what the writer encoded, but
// the decoder must still refuse anything else with an error, never a
// panic or an allocation the bytes cannot justify.
func FuzzApply(f *testing.F) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("", 3600))
	gold := 0.5
	in := market.Intent{ID: "i-1", RequestID: "r", Buyer: "did:key:zA", Intent: "SORT", Parameters: json.RawMessage(`{}`),
		State: market.IntentOpen, CreatedAt: t0, Acceptance: market.Acceptance{Policy: market.AcceptSchema, Schema: []byte(`{}`)}}
	c := market.Contract{ID: "c-1", Buyer: "did:key:zA", Seller: "did:key:zB", State: market.ContractSettled,
		Delivery: &market.Delivery{Output: []byte(`[1]`), Check: &market.CheckResult{Passed: true}},
		Dispute:  &market.Dispute{Reason: "x"}, Arbiters: []market.AgentID{"did:key:zC"},
		Reviews: []market.Review{{Arbiter: "did:key:zC", Quality: 1}}, GoldQuality: &gold,
		Outcome: &market.Outcome{Result: market.ResultPaid, PaidMicrocredits: 5}, Children: []string{"c-2"}}
	grant, expires := int64(7), int64(99)
	seeds := [][]change{
		{{op: opIntent, seq: 1, v: &in}},
		{{op: opContract, seq: 1, v: &c}, {op: opEvent, v: &market.Event{Seq: 1, Type: "t", At: t0,
			Audience: []market.AgentID{"did:key:zA"}, Data: []byte(`{}`)}}},
		{{op: opAgent, v: &market.Agent{ID: "did:key:zA", Roles: []market.Role{market.RoleArbiter}}},
			{op: opGrant, k: [2]string{"op"}, v: &grant}, {op: opNonce, k: [2]string{"did:key:zA", "n"}, v: &expires},
			{op: opReceipt, v: &market.Receipt{Seq: 1}}, {op: opBid, seq: 1, v: &bidValue{Bid: market.Bid{ID: "b-1"}}},
			{op: opIdempotency, v: &market.IdempotencyRecord{Key: "k", Body: []byte{}}}},
	}
	for _, cs := range seeds {
		f.Add(encodeChanges(nil, cs), len(cs))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body []byte, count int) {
		a, err := openArchive(filepath.Join(dir, archiveFile))
		if err != nil {
			t.Fatal(err)
		}
		defer a.close()
		w := &writer{s: newState(a), now: time.Now, ver: 1}
		_ = w.apply(body, min(max(count, 0), 1000))
	})
}
