package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// listCases check the order, filters and paging of list queries, the due
// queries and the market statistics.
func listCases() []testCase {
	return []testCase{
		{"IntentsNewestFirst", testIntentsOrder},
		{"IntentsFilter", testIntentsFilter},
		{"IntentsPaging", testIntentsPaging},
		{"IntentsLimitDefaultAndCap", testIntentsLimits},
		{"IntentsDue", testIntentsDue},
		{"ContractsFilter", testContractsFilter},
		{"ContractsPaging", testContractsPaging},
		{"ContractsDue", testContractsDue},
		{"StatsSince", testStatsSince},
	}
}

func intentIDs(is []market.Intent) []string {
	var out []string
	for _, i := range is {
		out = append(out, i.ID)
	}
	return out
}

func contractIDs(cs []market.Contract) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func listIntents(t *testing.T, s market.Store, f market.IntentFilter) []string {
	t.Helper()
	return intentIDs(read(t, s, func(tx market.ReadTx) ([]market.Intent, error) { return tx.Intents(f) }))
}

func listContracts(t *testing.T, s market.Store, f market.ContractFilter) []string {
	t.Helper()
	return contractIDs(read(t, s, func(tx market.ReadTx) ([]market.Contract, error) { return tx.Contracts(f) }))
}

func testIntentsOrder(t *testing.T, s market.Store) {
	// Ids sort the other way from insertion and every CreatedAt is equal,
	// so only insertion order can give newest first.
	for _, id := range []string{"i-c", "i-b", "i-a"} {
		put(t, s, newIntent(id, alice, "TRANSLATE", market.IntentOpen, at(0)))
	}
	// Updating the oldest intent does not make it newer.
	old := newIntent("i-c", alice, "TRANSLATE", market.IntentSelecting, at(0))
	put(t, s, old)
	diff(t, "intents, newest first", []string{"i-a", "i-b", "i-c"}, listIntents(t, s, market.IntentFilter{}))
}

func testIntentsFilter(t *testing.T, s market.Store) {
	put(t, s,
		newIntent("i-1", alice, "TRANSLATE", market.IntentOpen, at(1)),
		newIntent("i-2", bob, "TRANSLATE", market.IntentSelecting, at(2)),
		newIntent("i-3", alice, "SUMMARISE", market.IntentOpen, at(3)),
		newIntent("i-4", alice, "TRANSLATE", market.IntentAwarded, at(4)),
		newIntent("i-5", ab, "TRANSLATE_V2", market.IntentOpen, at(5)),
	)
	tests := []struct {
		name string
		f    market.IntentFilter
		want []string
	}{
		{"All", market.IntentFilter{}, []string{"i-5", "i-4", "i-3", "i-2", "i-1"}},
		{"ByIntentType", market.IntentFilter{Intent: "TRANSLATE"}, []string{"i-4", "i-2", "i-1"}},
		{"ByState", market.IntentFilter{State: market.IntentOpen}, []string{"i-5", "i-3", "i-1"}},
		{"ByBuyer", market.IntentFilter{Buyer: alice}, []string{"i-4", "i-3", "i-1"}},
		{"ByBuyerPrefixMatchesNothing", market.IntentFilter{Buyer: "did:key:zA"}, nil},
		{"Combined", market.IntentFilter{Intent: "TRANSLATE", State: market.IntentOpen, Buyer: alice}, []string{"i-1"}},
		{"EligibleIsIgnored", market.IntentFilter{Eligible: true, Buyer: bob}, []string{"i-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diff(t, "intents", tt.want, listIntents(t, s, tt.f))
		})
	}
}

func testIntentsPaging(t *testing.T, s market.Store) {
	var objs []any
	for i := range 7 {
		typ := "TRANSLATE"
		if i%2 == 1 {
			typ = "SUMMARISE"
		}
		objs = append(objs, newIntent(fmt.Sprintf("i-%d", i), alice, typ, market.IntentOpen, at(i)))
	}
	put(t, s, objs...)

	t.Run("WalkAllPages", func(t *testing.T) {
		var got []string
		f := market.IntentFilter{Page: market.Page{Limit: 3}}
		for range 10 {
			page := listIntents(t, s, f)
			got = append(got, page...)
			if len(page) < 3 {
				break
			}
			f.After = page[len(page)-1]
		}
		diff(t, "pages joined", []string{"i-6", "i-5", "i-4", "i-3", "i-2", "i-1", "i-0"}, got)
	})
	t.Run("PagesOfAFilteredList", func(t *testing.T) {
		f := market.IntentFilter{Intent: "TRANSLATE", Page: market.Page{After: "i-4", Limit: 10}}
		diff(t, "TRANSLATE intents after i-4", []string{"i-2", "i-0"}, listIntents(t, s, f))
	})
	t.Run("AfterTheLastIsEmpty", func(t *testing.T) {
		diff(t, "after the oldest", []string(nil), listIntents(t, s, market.IntentFilter{Page: market.Page{After: "i-0"}}))
	})
	t.Run("UnknownCursorIsAnError", func(t *testing.T) {
		err := s.View(t.Context(), func(tx market.ReadTx) error {
			_, err := tx.Intents(market.IntentFilter{Page: market.Page{After: "i-nope"}})
			return err
		})
		wantKind(t, "Intents after an unknown id", err, market.Invalid)
	})
}

func testIntentsLimits(t *testing.T, s market.Store) {
	const n = 1001
	update(t, s, func(tx market.Tx) error {
		for i := range n {
			if err := tx.PutIntent(newIntent(fmt.Sprintf("i-%04d", i), alice, "TRANSLATE", market.IntentOpen, at(i))); err != nil {
				return err
			}
		}
		return nil
	})
	tests := []struct {
		limit, want int
	}{{0, 100}, {-5, 100}, {7, 7}, {1000, 1000}, {5000, 1000}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("Limit%d", tt.limit), func(t *testing.T) {
			got := listIntents(t, s, market.IntentFilter{Page: market.Page{Limit: tt.limit}})
			if len(got) != tt.want {
				t.Errorf("Intents with limit %d returned %d, want %d", tt.limit, len(got), tt.want)
			}
		})
	}
}

func testIntentsDue(t *testing.T, s market.Store) {
	// Each intent's deadlines are set on their own; created times are
	// unrelated.
	mk := func(id string, state market.IntentState, bid, award int) market.Intent {
		i := newIntent(id, alice, "TRANSLATE", state, at(0))
		i.BidDeadline, i.AwardDeadline = at(bid), at(award)
		return i
	}
	put(t, s,
		mk("open-late", market.IntentOpen, 300, 900),          // bid deadline 300
		mk("open-early", market.IntentOpen, 100, 900),         // bid deadline 100
		mk("selecting", market.IntentSelecting, 50, 200),      // award deadline 200
		mk("selecting-far", market.IntentSelecting, 10, 1000), // award deadline 1000
		mk("awarded", market.IntentAwarded, 1, 2),
		mk("cancelled", market.IntentCancelled, 1, 2),
		mk("expired", market.IntentExpired, 1, 2),
	)
	due := func(now time.Time, limit int) []string {
		return intentIDs(read(t, s, func(tx market.ReadTx) ([]market.Intent, error) { return tx.IntentsDue(now, limit) }))
	}
	tests := []struct {
		name  string
		now   time.Time
		limit int
		want  []string
	}{
		{"NothingDueYet", at(99), 10, nil},
		{"DeadlineReachedIsDue", at(100), 10, []string{"open-early"}},
		{"OpenByBidDeadline", at(150), 10, []string{"open-early"}},
		{"SelectingByAwardDeadline", at(250), 10, []string{"open-early", "selecting"}},
		{"OldestDeadlineFirst", at(5000), 10, []string{"open-early", "selecting", "open-late", "selecting-far"}},
		{"Limit", at(5000), 2, []string{"open-early", "selecting"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diff(t, "due intents", tt.want, due(tt.now, tt.limit))
		})
	}
	t.Run("LeavingTheStateClearsTheDeadline", func(t *testing.T) {
		closed := mk("open-early", market.IntentCancelled, 100, 900)
		put(t, s, closed)
		diff(t, "due intents", []string{"selecting"}, due(at(250), 10))
	})
	t.Run("MovingToSelectingUsesTheAwardDeadline", func(t *testing.T) {
		put(t, s, mk("open-late", market.IntentSelecting, 300, 900))
		diff(t, "due intents at 400", []string{"selecting"}, due(at(400), 10))
		diff(t, "due intents at 950", []string{"selecting", "open-late"}, due(at(950), 10))
	})
}

func testContractsFilter(t *testing.T, s market.Store) {
	withArbiters := func(c market.Contract, arbiters ...market.AgentID) market.Contract {
		c.Arbiters = arbiters
		return c
	}
	reviewedBy := func(c market.Contract, arbiter market.AgentID) market.Contract {
		c.Reviews = []market.Review{{Arbiter: arbiter, Quality: 1, Verdict: market.VerdictRelease, ReviewedAt: at(9)}}
		return c
	}
	child := newContract("c-4", bob, carol, "TRANSLATE", market.ContractAwarded, at(4))
	child.ParentContract = "c-1"
	put(t, s,
		newContract("c-1", alice, bob, "TRANSLATE", market.ContractAwarded, at(1)),
		withArbiters(newContract("c-2", alice, carol, "SUMMARISE", market.ContractInReview, at(2)), dave),
		reviewedBy(settled(newContract("c-3", carol, bob, "TRANSLATE", market.ContractAwarded, at(3)), market.ResultPaid, 1, at(9)), abc),
		child,
		newContract("c-5", ab, ab, "TRANSLATE", market.ContractAwarded, at(5)),
	)
	tests := []struct {
		name string
		f    market.ContractFilter
		want []string
	}{
		{"All", market.ContractFilter{}, []string{"c-5", "c-4", "c-3", "c-2", "c-1"}},
		{"AgentAsBuyer", market.ContractFilter{Agent: alice}, []string{"c-2", "c-1"}},
		{"AgentAsBuyerOrSeller", market.ContractFilter{Agent: bob}, []string{"c-4", "c-3", "c-1"}},
		{"AgentAsAssignedArbiter", market.ContractFilter{Agent: dave}, []string{"c-2"}},
		{"AgentAsReviewer", market.ContractFilter{Agent: abc}, []string{"c-3"}},
		{"AgentPrefixDoesNotMatch", market.ContractFilter{Agent: ab}, []string{"c-5"}},
		{"ByState", market.ContractFilter{State: market.ContractAwarded}, []string{"c-5", "c-4", "c-1"}},
		{"ByIntentType", market.ContractFilter{Intent: "SUMMARISE"}, []string{"c-2"}},
		{"ByParent", market.ContractFilter{Parent: "c-1"}, []string{"c-4"}},
		{"AgentAndState", market.ContractFilter{Agent: carol, State: market.ContractSettled}, []string{"c-3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diff(t, "contracts", tt.want, listContracts(t, s, tt.f))
		})
	}
	t.Run("ReassignedArbiterStopsMatching", func(t *testing.T) {
		put(t, s, withArbiters(newContract("c-2", alice, carol, "SUMMARISE", market.ContractInReview, at(2)), carol))
		diff(t, "dave's contracts", []string(nil), listContracts(t, s, market.ContractFilter{Agent: dave}))
	})
}

func testContractsPaging(t *testing.T, s market.Store) {
	var objs []any
	for i := range 6 {
		buyer := alice
		if i%3 == 0 {
			buyer = dave
		}
		objs = append(objs, newContract(fmt.Sprintf("c-%d", i), buyer, bob, "TRANSLATE", market.ContractAwarded, at(0)))
	}
	put(t, s, objs...)
	tests := []struct {
		name string
		f    market.ContractFilter
		want []string
	}{
		{"FirstPage", market.ContractFilter{Page: market.Page{Limit: 2}}, []string{"c-5", "c-4"}},
		{"SecondPage", market.ContractFilter{Page: market.Page{After: "c-4", Limit: 2}}, []string{"c-3", "c-2"}},
		{"LastPage", market.ContractFilter{Page: market.Page{After: "c-2", Limit: 2}}, []string{"c-1", "c-0"}},
		{"AgentPage", market.ContractFilter{Agent: alice, Page: market.Page{After: "c-4", Limit: 2}}, []string{"c-2", "c-1"}},
		{"AgentCursorNotItsOwn", market.ContractFilter{Agent: dave, Page: market.Page{After: "c-4"}}, []string{"c-3", "c-0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diff(t, "contracts", tt.want, listContracts(t, s, tt.f))
		})
	}
	t.Run("UnknownCursorIsAnError", func(t *testing.T) {
		err := s.View(t.Context(), func(tx market.ReadTx) error {
			_, err := tx.Contracts(market.ContractFilter{Page: market.Page{After: "c-nope"}})
			return err
		})
		wantKind(t, "Contracts after an unknown id", err, market.Invalid)
	})
}

// testContractsDue checks that a contract is due once its deadline has
// passed, strictly: a delivery or review at the deadline itself is on
// time. An intent, in contrast, is due when its deadline is reached,
// because bidding closes at the bid deadline.
func testContractsDue(t *testing.T, s market.Store) {
	mk := func(id string, state market.ContractState, deliverBy, reviewBy int) market.Contract {
		c := newContract(id, alice, bob, "TRANSLATE", state, at(0))
		c.DeliverBy, c.ReviewBy = at(deliverBy), at(reviewBy)
		return c
	}
	put(t, s,
		mk("awarded", market.ContractAwarded, 100, 50),     // due by delivery at 100
		mk("delivered", market.ContractDelivered, 10, 200), // due by review at 200
		mk("in-review", market.ContractInReview, 10, 150),  // due by review at 150
		mk("awarded-late", market.ContractAwarded, 500, 1), // due by delivery at 500
		mk("settled", market.ContractSettled, 1, 1),        // terminal: never due
		mk("refunded", market.ContractRefunded, 1, 1),      // terminal: never due
		mk("delivered-far", market.ContractDelivered, 1, 9000),
	)
	due := func(now time.Time, limit int) []string {
		return contractIDs(read(t, s, func(tx market.ReadTx) ([]market.Contract, error) { return tx.ContractsDue(now, limit) }))
	}
	tests := []struct {
		name  string
		now   time.Time
		limit int
		want  []string
	}{
		{"NothingDueYet", at(99), 10, nil},
		{"DeadlineReachedIsStillOnTime", at(100), 10, nil},
		{"AwardedByDeliverBy", at(101), 10, []string{"awarded"}},
		{"InReviewByReviewBy", at(160), 10, []string{"awarded", "in-review"}},
		{"OldestDeadlineFirst", at(1000), 10, []string{"awarded", "in-review", "delivered", "awarded-late"}},
		{"Limit", at(1000), 3, []string{"awarded", "in-review", "delivered"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diff(t, "due contracts", tt.want, due(tt.now, tt.limit))
		})
	}
	t.Run("DeliveryMovesTheDeadline", func(t *testing.T) {
		put(t, s, mk("awarded", market.ContractDelivered, 100, 700))
		diff(t, "due contracts at 600", []string{"in-review", "delivered", "awarded-late"}, due(at(600), 10))
	})
	t.Run("SettlingClearsTheDeadline", func(t *testing.T) {
		put(t, s, settled(mk("in-review", market.ContractInReview, 10, 150), market.ResultPaid, 1, at(155)))
		diff(t, "due contracts at 600", []string{"delivered", "awarded-late"}, due(at(600), 10))
	})
}

func testStatsSince(t *testing.T, s market.Store) {
	const typ = "TRANSLATE"
	since := at(100)
	offer := func(id string, seller market.AgentID, intent string, state market.OfferState) market.Offer {
		return newOffer(id, seller, intent, state)
	}
	price := func(c market.Contract, p int64) market.Contract {
		c.PriceMicrocredits = p
		return c
	}
	put(t, s,
		// Intents: two in the window (one exactly at since), one before, one of another type.
		newIntent("i-old", alice, typ, market.IntentAwarded, at(50)),
		newIntent("i-1", alice, typ, market.IntentOpen, at(100)),
		newIntent("i-2", bob, typ, market.IntentSelecting, at(150)),
		newIntent("i-other", alice, "SUMMARISE", market.IntentOpen, at(150)),
	)
	put(t, s,
		// Bids count by their intent's type: three in the window.
		newBid("b-old", "i-old", bob, at(60)),
		newBid("b-1", "i-1", bob, at(110)),
		newBid("b-2", "i-1", carol, at(120)),
		newBid("b-3", "i-old", carol, at(130)), // a late bid on an older intent still counts
		newBid("b-other", "i-other", bob, at(130)),
		// Active sellers: bob and carol (twice) offer TRANSLATE now; dave withdrew; abc offers another type.
		offer("o-1", bob, typ, market.OfferActive),
		offer("o-2", carol, typ, market.OfferActive),
		offer("o-3", carol, typ, market.OfferActive),
		offer("o-4", dave, typ, market.OfferWithdrawn),
		offer("o-5", abc, "SUMMARISE", market.OfferActive),
		// Contracts: four awarded in the window; fills are the ones settled
		// with payment in the window.
		settled(price(newContract("c-old", alice, bob, typ, market.ContractAwarded, at(40)), 1000), market.ResultPaid, 1000, at(90)),
		settled(price(newContract("c-late", alice, bob, typ, market.ContractAwarded, at(80)), 2000), market.ResultPaid, 2000, at(120)),
		settled(price(newContract("c-1", alice, bob, typ, market.ContractAwarded, at(110)), 3000), market.ResultPartial, 1500, at(130)),
		settled(price(newContract("c-2", alice, carol, typ, market.ContractAwarded, at(120)), 4001), market.ResultPaid, 4001, at(140)),
		settled(price(newContract("c-3", alice, carol, typ, market.ContractAwarded, at(130)), 9000), market.ResultRefunded, 0, at(150)),
		price(newContract("c-4", alice, carol, typ, market.ContractDelivered, at(140)), 7000),
		settled(price(newContract("c-other", alice, bob, "SUMMARISE", market.ContractAwarded, at(120)), 5000), market.ResultPaid, 5000, at(130)),
	)
	got := read(t, s, func(tx market.ReadTx) (market.IntentStats, error) { return tx.StatsSince(typ, since) })
	want := market.IntentStats{
		Intent:  typ,
		Intents: 2,
		Bids:    3,
		Awards:  4,
		Fills:   3, // c-late, c-1, c-2
		// The index is the mean agreed price of the fills, rounded down:
		// (2000 + 3000 + 4001) / 3.
		PriceIndexMicrocredits: 3000,
		// The volume is what the fills paid: 2000 + 1500 + 4001.
		VolumeMicrocredits: 7501,
		ActiveSellers:      2,
	}
	diff(t, "stats", want, got)
}
