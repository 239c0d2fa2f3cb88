package ledger

import (
	"fmt"
	"math/bits"
)

// u128 accumulates counters without overflow.
type u128 struct{ hi, lo uint64 }

func (u *u128) add(v uint64) {
	var c uint64
	u.lo, c = bits.Add64(u.lo, v, 0)
	u.hi += c
}

// checkInvariants verifies the state's money rules:
//   - conservation: total debits equal total credits, posted and pending,
//     so all balances sum to zero;
//   - no wallet's debits exceed its posted credits;
//   - each account's pending counters equal its open pending transfers.
func (s *state) checkInvariants() error {
	var dp, dpo, cp, cpo u128
	for i := range s.accts {
		a := &s.accts[i]
		dp.add(a.DebitsPending)
		dpo.add(a.DebitsPosted)
		cp.add(a.CreditsPending)
		cpo.add(a.CreditsPosted)
		if a.Flags&DebitsMustNotExceedCredits != 0 && a.DebitsPending+a.DebitsPosted > a.CreditsPosted {
			return fmt.Errorf("wallet %s is below zero: debits %d pending + %d posted exceed credits %d",
				a.ID, a.DebitsPending, a.DebitsPosted, a.CreditsPosted)
		}
	}
	if dpo != cpo {
		return fmt.Errorf("credits not conserved: posted debits %v != posted credits %v", dpo, cpo)
	}
	if dp != cp {
		return fmt.Errorf("credits not conserved: pending debits %v != pending credits %v", dp, cp)
	}
	debit := make([]uint64, len(s.accts))
	credit := make([]uint64, len(s.accts))
	for _, p := range s.pending {
		debit[p.debit] += p.amount
		credit[p.credit] += p.amount
	}
	for i := range s.accts {
		a := &s.accts[i]
		if a.DebitsPending != debit[i] || a.CreditsPending != credit[i] {
			return fmt.Errorf("account %s pending counters %d/%d do not match its open pending transfers %d/%d",
				a.ID, a.DebitsPending, a.CreditsPending, debit[i], credit[i])
		}
	}
	return nil
}
