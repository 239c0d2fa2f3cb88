package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"pgregory.net/rapid"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/ledgertest"
	"github.com/agentmarket/agentmarket/postgres"
	"github.com/agentmarket/agentmarket/postgres/pgtest"
)

// TestLedgerAgreesWithTheEmbeddedLedger drives the PostgreSQL ledger and
// the embedded one with the same random operations (batches of plain,
// pending, post and void transfers, linked or not, valid or not, with
// retried ids; mandates; clock moves; ticks) and checks that they give
// every transfer the same result and hold the same counters and pending
// statuses.
//
// The two stamp events a few nanoseconds apart (the embedded ledger
// orders all of them, this one each account's), so the clock moves in
// whole seconds while timeouts, budget windows and mandate expiries end
// on half seconds: no comparison is ever decided by those nanoseconds.
// Counters and statuses are compared after both have ticked, because the
// embedded ledger expires every due reservation on any call and this one
// those a batch touches, or on a tick.
func TestLedgerAgreesWithTheEmbeddedLedger(t *testing.T) {
	base := pgtest.URL(t)
	admin, err := pgx.Connect(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	rapid.Check(t, func(rt *rapid.T) {
		d := newDifferential(rt, admin, base)
		steps := rapid.IntRange(5, 40).Draw(rt, "steps")
		for range steps {
			switch rapid.IntRange(0, 9).Draw(rt, "op") {
			case 0, 1:
				// The extra millisecond keeps the clock off the exact
				// instant a reservation expires. The two ledgers stamp
				// events nanoseconds apart (the embedded one makes every
				// timestamp unique, PostgreSQL only within an account's
				// history), so at that instant one would see the
				// reservation due and the other not, a difference in
				// stamping rather than in the rules under test.
				d.clock.Advance(time.Duration(rapid.IntRange(0, 150).Draw(rt, "seconds"))*time.Second + time.Millisecond)
			case 2:
				d.setMandate()
			case 3:
				d.tickAndCompare()
			default:
				d.batch()
			}
		}
		d.tickAndCompare()
	})
}

// differential is one run: the two ledgers on one clock, and what the
// run has used so far, to draw retries and resolutions from.
type differential struct {
	t        *rapid.T
	clock    *ledgertest.Clock
	emb, pg  ledgertest.Ledger
	next     uint64      // the next fresh transfer id
	used     []ledger.ID // every transfer id submitted
	reserved []ledger.ID // ids submitted as reservations
	sent     []ledger.Transfer
}

const (
	dTreasury = 1
	dWallets  = 4 // accounts 2 to 5
	dUnknown  = 9
)

func newDifferential(rt *rapid.T, admin *pgx.Conn, base string) *differential {
	d := &differential{t: rt, clock: ledgertest.NewClock(), next: 100}
	dir, err := os.MkdirTemp("", "differential-")
	if err != nil {
		rt.Fatal(err)
	}
	rt.Cleanup(func() { os.RemoveAll(dir) })
	emb, err := ledger.Open(dir, ledger.Options{Now: d.clock.Now})
	if err != nil {
		rt.Fatal(err)
	}
	rt.Cleanup(func() { emb.Close() })
	var b [6]byte
	rand.Read(b[:])
	schema := "test_diff_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		rt.Fatal(err)
	}
	rt.Cleanup(func() { admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	url, err := pgtest.WithSchema(base, schema)
	if err != nil {
		rt.Fatal(err)
	}
	pg, err := postgres.OpenLedger(context.Background(), url, postgres.LedgerOptions{Now: d.clock.Now})
	if err != nil {
		rt.Fatal(err)
	}
	rt.Cleanup(func() { pg.Close() })
	d.emb, d.pg = emb, pg

	accounts := []ledger.Account{{ID: ledger.IDFromUint64(dTreasury)}}
	var funding []ledger.Transfer
	for w := range uint64(dWallets) {
		accounts = append(accounts, ledger.Account{ID: ledger.IDFromUint64(2 + w), Flags: ledger.DebitsMustNotExceedCredits})
		funding = append(funding, ledger.Transfer{ID: ledger.IDFromUint64(10 + w), DebitAccountID: ledger.IDFromUint64(dTreasury),
			CreditAccountID: ledger.IDFromUint64(2 + w), Amount: 1000})
	}
	for _, l := range []ledgertest.Ledger{emb, pg} {
		if _, err := l.CreateAccounts(context.Background(), accounts); err != nil {
			rt.Fatal(err)
		}
		if _, err := l.CreateTransfers(context.Background(), funding); err != nil {
			rt.Fatal(err)
		}
	}
	return d
}

// account draws an account: usually a wallet, sometimes the treasury, an
// unknown one or none.
func (d *differential) account(label string) ledger.ID {
	switch n := rapid.IntRange(0, 19).Draw(d.t, label); {
	case n == 0:
		return ledger.ID{}
	case n == 1:
		return ledger.IDFromUint64(dUnknown)
	case n < 5:
		return ledger.IDFromUint64(dTreasury)
	default:
		return ledger.IDFromUint64(2 + uint64(n)%dWallets)
	}
}

// halfSeconds draws a duration of whole seconds and a half.
func (d *differential) halfSeconds(label string) time.Duration {
	return time.Duration(rapid.IntRange(1, 120).Draw(d.t, label))*time.Second + 500*time.Millisecond
}

func (d *differential) pick(ids []ledger.ID, label string) ledger.ID {
	if len(ids) == 0 {
		return ledger.IDFromUint64(dUnknown)
	}
	return ids[rapid.IntRange(0, len(ids)-1).Draw(d.t, label)]
}

// transfer draws one transfer.
func (d *differential) transfer() ledger.Transfer {
	t := d.t
	if len(d.sent) > 0 && rapid.IntRange(0, 9).Draw(t, "retry") == 0 {
		x := d.sent[rapid.IntRange(0, len(d.sent)-1).Draw(t, "retried")]
		if rapid.Bool().Draw(t, "alter") {
			x.Amount++
		}
		return x
	}
	d.next++
	x := ledger.Transfer{ID: ledger.IDFromUint64(d.next)}
	switch rapid.IntRange(0, 3).Draw(t, "kind") {
	case 0:
		x.DebitAccountID, x.CreditAccountID = d.account("debit"), d.account("credit")
		x.Amount = uint64(rapid.IntRange(0, 700).Draw(t, "amount"))
	case 1:
		x.Flags = ledger.Pending
		x.DebitAccountID, x.CreditAccountID = d.account("debit"), d.account("credit")
		x.Amount = uint64(rapid.IntRange(0, 700).Draw(t, "amount"))
		if rapid.Bool().Draw(t, "timeout") {
			x.Timeout = d.halfSeconds("timeout")
		}
		d.reserved = append(d.reserved, x.ID)
	case 2:
		x.Flags = ledger.PostPending
		x.PendingID = d.pick(append(d.reserved, d.pick(d.used, "any")), "pending")
		x.Amount = uint64(rapid.IntRange(0, 400).Draw(t, "posted"))
	case 3:
		x.Flags = ledger.VoidPending
		x.PendingID = d.pick(append(d.reserved, d.pick(d.used, "any")), "pending")
	}
	if rapid.IntRange(0, 29).Draw(t, "odd") == 0 {
		x.Timeout = time.Second // invalid on all but a reservation
	}
	d.used = append(d.used, x.ID)
	return x
}

func (d *differential) batch() {
	n := rapid.IntRange(1, 6).Draw(d.t, "size")
	xs := make([]ledger.Transfer, n)
	for i := range xs {
		xs[i] = d.transfer()
		if rapid.IntRange(0, 3).Draw(d.t, "linked") == 0 {
			xs[i].Flags |= ledger.Linked
		}
	}
	d.sent = append(d.sent, xs...)
	want, err := d.emb.CreateTransfers(context.Background(), xs)
	if err != nil {
		d.t.Fatal(err)
	}
	got, err := d.pg.CreateTransfers(context.Background(), xs)
	if err != nil {
		d.t.Fatal(err)
	}
	if diff := cmp.Diff(resultCodes(want), resultCodes(got)); diff != "" {
		d.t.Fatalf("results of %s (-embedded +postgres):\n%s", describe(xs), diff)
	}
}

func (d *differential) setMandate() {
	t := d.t
	m := ledger.Mandate{AccountID: ledger.IDFromUint64(2 + uint64(rapid.IntRange(0, dWallets-1).Draw(t, "wallet")))}
	if rapid.Bool().Draw(t, "cap") {
		m.MaxPerTransfer = uint64(rapid.IntRange(1, 500).Draw(t, "max"))
	}
	if rapid.Bool().Draw(t, "budget") {
		m.Budget, m.Window = uint64(rapid.IntRange(1, 1000).Draw(t, "budget")), d.halfSeconds("window")
	}
	if rapid.IntRange(0, 3).Draw(t, "parties") == 0 {
		m.Counterparties = []ledger.ID{d.account("party")}
		if m.Counterparties[0].IsZero() {
			m.Counterparties = nil
		}
	}
	if rapid.IntRange(0, 3).Draw(t, "expires") == 0 {
		m.ExpiresAt = d.clock.Now().Add(d.halfSeconds("expiry"))
	}
	for _, l := range []ledgertest.Ledger{d.emb, d.pg} {
		if err := l.SetMandate(context.Background(), m); err != nil {
			t.Fatalf("set mandate %+v: %v", m, err)
		}
	}
}

// tickAndCompare ticks both ledgers until nothing is due and compares
// every account's counters and every reservation's status.
func (d *differential) tickAndCompare() {
	for _, l := range []ledgertest.Ledger{d.emb, d.pg} {
		for {
			n, err := l.Tick(context.Background())
			if err != nil {
				d.t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		if err := l.CheckInvariants(context.Background()); err != nil {
			d.t.Fatal(err)
		}
	}
	ids := []ledger.ID{ledger.IDFromUint64(dTreasury)}
	for w := range uint64(dWallets) {
		ids = append(ids, ledger.IDFromUint64(2+w))
	}
	type state struct {
		Counters [][4]uint64
		Statuses []string
	}
	read := func(l ledgertest.Ledger) state {
		var s state
		as, err := l.LookupAccounts(context.Background(), ids)
		if err != nil {
			d.t.Fatal(err)
		}
		for _, a := range as {
			s.Counters = append(s.Counters, [4]uint64{a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted})
		}
		for _, id := range d.reserved {
			st, err := l.PendingStatus(context.Background(), id)
			if err != nil {
				d.t.Fatal(err)
			}
			s.Statuses = append(s.Statuses, st.String())
		}
		return s
	}
	if diff := cmp.Diff(read(d.emb), read(d.pg)); diff != "" {
		d.t.Fatalf("state after ticking (-embedded +postgres):\n%s", diff)
	}
}

func resultCodes(rs []ledger.Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// describe prints a batch compactly, for a failure's message.
func describe(xs []ledger.Transfer) string {
	var b strings.Builder
	for _, x := range xs {
		fmt.Fprintf(&b, "\n\t%s: %s->%s amount %d pending %s timeout %s flags %d",
			x.ID.String()[24:], x.DebitAccountID.String()[24:], x.CreditAccountID.String()[24:], x.Amount,
			x.PendingID.String()[24:], x.Timeout, x.Flags)
	}
	return b.String()
}
