package checker

import (
	"crypto/sha256"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
)

// The sort and matmul checkers compare large objects by evaluating random
// fingerprints in the prime field of order p61 = 2^61 − 1, where a nonzero
// polynomial of degree d vanishes at a uniformly random point with
// probability at most d/p61. Arithmetic modulo a Mersenne prime needs no
// division, only a 64×64→128-bit multiply and a fold.
const p61 = 1<<61 - 1

// mulmod returns a·b mod p61 for a, b < p61.
func mulmod(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	// a·b = q·2^61 + (lo & p61) with q = hi·2^3 + lo>>61, and 2^61 ≡ 1, so
	// a·b ≡ q + (lo & p61). Both terms are at most p61 and their sum is
	// below 2·p61, so one subtraction reduces it.
	r := (lo & p61) + (hi<<3 | lo>>61)
	if r >= p61 {
		r -= p61
	}
	return r
}

// addmod returns a+b mod p61 for a, b < p61.
func addmod(a, b uint64) uint64 {
	s := a + b
	if s >= p61 {
		s -= p61
	}
	return s
}

// submod returns a−b mod p61 for a, b < p61.
func submod(a, b uint64) uint64 {
	if a >= b {
		return a - b
	}
	return a + p61 - b
}

// toField maps x to its residue modulo p61.
func toField(x int64) uint64 {
	m := x % p61
	if m < 0 {
		m += p61
	}
	return uint64(m)
}

// verdictRNG returns a generator seeded from sha256 of the checker's name,
// params and output, so that the random points a fingerprint is evaluated
// at are unpredictable before the output is fixed, yet the same inputs
// always give the same verdict. A seller who varies a wrong output to hunt
// for a lucky seed faces a fresh, independent draw for every variant.
func verdictRNG(name string, params, output []byte) *rand.Rand {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(params))))
	h.Write(params)
	h.Write(output)
	var seed [32]byte
	h.Sum(seed[:0])
	return rand.New(rand.NewChaCha8(seed))
}

// fieldElement draws a uniformly random element of the field.
func fieldElement(rng *rand.Rand) uint64 {
	return rng.Uint64N(p61)
}
