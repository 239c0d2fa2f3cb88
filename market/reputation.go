package market

import (
	"math"
	"time"
)

// Reputation is built only from settled, escrow-backed outcomes. Each
// outcome adds weight w to an agent's Good sum times its quality q, and to
// its Bad sum times 1-q. The sums decay with a half-life, so old work
// fades. The weight is the outcome's value relative to the intent type's
// price index, times how independent the buyer is of the seller: zero
// for agents of one operator or for a pair inside a payment cycle (wash
// trading), and 1/k for the k-th trade of the same pair, so that one
// loyal buyer cannot make a reputation alone.
//
// Thresholds compare the Wilson lower bound of the score, at one-sided
// 95% confidence, so that a newcomer cannot clear 0.95 on a few lucky
// trades: it takes about 52 perfect trades of full weight.
const lowerBoundZ = 1.6448536269514722

// Decay returns the factor by which evidence shrinks from then to now.
func Decay(then, now time.Time, halfLife time.Duration) float64 {
	if halfLife <= 0 || then.IsZero() || !now.After(then) {
		return 1
	}
	return math.Exp2(-float64(now.Sub(then)) / float64(halfLife))
}

// At returns the record decayed to now.
func (s ScoreRecord) At(now time.Time, halfLife time.Duration) ScoreRecord {
	f := Decay(s.UpdatedAt, now, halfLife)
	s.Good *= f
	s.Bad *= f
	s.BuyerGood *= f
	s.BuyerBad *= f
	if now.After(s.UpdatedAt) {
		s.UpdatedAt = now
	}
	return s
}

// At returns the record decayed to now.
func (p PairRecord) At(now time.Time, halfLife time.Duration) PairRecord {
	f := Decay(p.UpdatedAt, now, halfLife)
	p.Good *= f
	p.Bad *= f
	if now.After(p.UpdatedAt) {
		p.UpdatedAt = now
	}
	return p
}

// ValueWeight weighs an outcome by its price relative to the intent
// type's price index: the square root of the ratio, between 1/4 and 4.
// With no index yet every outcome weighs 1.
func ValueWeight(price, index int64) float64 {
	if index <= 0 || price <= 0 {
		return 1
	}
	return min(4, max(0.25, math.Sqrt(float64(price)/float64(index))))
}

// Reputation summarises a score record.
func (s ScoreRecord) Reputation() Reputation {
	n := s.Good + s.Bad
	return Reputation{
		Agent:        s.Agent,
		Intent:       s.Intent,
		Score:        (s.Good + 1) / (n + 2),
		LowerBound:   WilsonLowerBound(s.Good, n),
		Evidence:     n,
		Contracts:    s.Contracts,
		BuyerScore:   (s.BuyerGood + 1) / (s.BuyerGood + s.BuyerBad + 2),
		DisputesLost: s.DisputesLost,
	}
}

// WilsonLowerBound is the lower bound of the Wilson score interval for
// good successes out of n (both may be fractional), at one-sided 95%.
// It is 0 with no evidence.
func WilsonLowerBound(good, n float64) float64 {
	if n <= 0 {
		return 0
	}
	p := min(1, max(0, good/n))
	z2 := lowerBoundZ * lowerBoundZ
	centre := p + z2/(2*n)
	spread := lowerBoundZ * math.Sqrt(p*(1-p)/n+z2/(4*n*n))
	return max(0, (centre-spread)/(1+z2/n))
}
