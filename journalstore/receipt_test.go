package journalstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/agentmarket/agentmarket/journalstore"
	"github.com/agentmarket/agentmarket/market"
)

// TestReceiptsSignedOffTheWriter stores receipts with PutReceiptSigning
// from concurrent Updates, some of which fail after storing theirs, and
// checks that every receipt a View or a reopened store reads carries the
// signature its own sign made, that sign ran once for each receipt that
// committed, and that the failed ones left no gap in the sequence.
func TestReceiptsSignedOffTheWriter(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts journalstore.Options
	}{
		{"Default", journalstore.Options{}},
		{"ArchivingEverything", archiveAll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := journalstore.Open(dir, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			signed := map[string]int{}
			errFail := errors.New("fails after its receipt")
			var wg sync.WaitGroup
			const n = 200
			for i := range n {
				wg.Go(func() {
					contract := fmt.Sprintf("c%03d", i)
					err := s.Update(context.Background(), func(tx market.Tx) error {
						r := market.Receipt{Seq: 1, Contract: contract}
						if last, err := tx.LastReceipt(); err == nil {
							r.Seq = last.Seq + 1
						}
						sign := func() string {
							mu.Lock()
							signed[contract]++
							mu.Unlock()
							return "sig-" + contract
						}
						if err := tx.(market.ReceiptSigningTx).PutReceiptSigning(r, sign); err != nil {
							return err
						}
						if i%7 == 3 {
							return errFail
						}
						return nil
					})
					if err != nil && !errors.Is(err, errFail) {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			want := n - (n+3)/7
			check := func(s market.Store) {
				t.Helper()
				err := s.View(context.Background(), func(tx market.ReadTx) error {
					seen := map[string]bool{}
					for seq := uint64(1); seq <= uint64(want); seq++ {
						r, err := tx.Receipt(seq)
						if err != nil {
							return err
						}
						if r.Signature != "sig-"+r.Contract || seen[r.Contract] {
							return fmt.Errorf("receipt %d: contract %s, signature %q", seq, r.Contract, r.Signature)
						}
						seen[r.Contract] = true
					}
					if _, err := tx.Receipt(uint64(want) + 1); !market.Is(err, market.NotExist) {
						return fmt.Errorf("receipt %d: %v, want NotExist", want+1, err)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			check(s)
			mu.Lock()
			for c, calls := range signed {
				if calls != 1 {
					t.Errorf("the receipt of %s was signed %d times", c, calls)
				}
			}
			if len(signed) != want {
				t.Errorf("%d receipts signed, want %d", len(signed), want)
			}
			mu.Unlock()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			check(MustOpen(t, dir, tc.opts))
		})
	}
}
