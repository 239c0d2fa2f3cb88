package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ledgerVerify runs "ledger verify --data data" with args, and returns
// what it printed.
func ledgerVerify(data string, args ...string) (string, error) {
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"ledger", "verify", "--data", data}, args...),
		func(string) string { return "" }, strings.NewReader(""), &out, &out)
	return out.String(), err
}

// TestLedgerVerifyChecksTheJournalStore runs "ledger verify --data" on a
// data directory whose market is in the journal store: it checks the
// store too, as text and as JSON. Then a byte in the middle of the
// store's journal changes, and the command fails naming the store's
// record while the ledger still passes. On a SQLite market it checks
// the ledger alone, as before.
func TestLedgerVerifyChecksTheJournalStore(t *testing.T) {
	data := simulatedMarket(t, storeJournal)
	out, err := ledgerVerify(data)
	if err != nil || !strings.Contains(out, "ledger ok:") || !strings.Contains(out, "market store ok: version ") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	type report struct {
		OK          bool
		Error       string
		MarketStore struct {
			OK       bool
			Snapshot uint64
			Records  uint64
			Version  uint64
			Intents  int64
			Error    string
		} `json:"market_store"`
	}
	out, err = ledgerVerify(data, "--json")
	var rep report
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK || !rep.MarketStore.OK ||
		rep.MarketStore.Records == 0 || rep.MarketStore.Version != rep.MarketStore.Snapshot+rep.MarketStore.Records || rep.MarketStore.Intents == 0 {
		t.Fatalf("verify --json: %v, %+v\n%s", err, rep, out)
	}

	segs, err := filepath.Glob(filepath.Join(data, "market", "journal-*.amj"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no journal segments in the market store: %v", err)
	}
	seg := segs[len(segs)-1]
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	for off := 0; off < len(b); off += 96 + int(binary.LittleEndian.Uint32(b[off+24:])) {
		offs = append(offs, off)
	}
	if len(offs) < 3 {
		t.Fatalf("the market's last segment holds %d records; the test needs one in the middle", len(offs))
	}
	b[offs[len(offs)/2]+96+1] ^= 0x55
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = ledgerVerify(data)
	if err == nil || !strings.Contains(err.Error(), "market store") || !strings.Contains(err.Error(), filepath.Base(seg)) ||
		!strings.Contains(out, "ledger ok:") {
		t.Errorf("verify after a changed byte: %v\n%s", err, out)
	}
	out, err = ledgerVerify(data, "--json")
	rep = report{}
	if err == nil || json.Unmarshal([]byte(out), &rep) != nil || rep.OK || rep.MarketStore.OK ||
		!strings.Contains(rep.MarketStore.Error, "hash mismatch") || rep.Error != "" {
		t.Errorf("verify --json after a changed byte: %v, %+v\n%s", err, rep, out)
	}

	t.Run("SQLiteMarketIsLedgerOnly", func(t *testing.T) {
		out, err := ledgerVerify(simulatedMarket(t, storeSQLite), "--json")
		if err != nil || strings.Contains(out, "market_store") || !strings.Contains(out, `"ok": true`) {
			t.Errorf("verify --json: %v\n%s", err, out)
		}
	})
}
