package checker

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
)

const (
	// maxFactorBits bounds n, so that checking a factorisation stays cheap
	// and a task stays within reach of Pollard's rho.
	maxFactorBits = 128
	// maxFactorDigits is the length of 2^128 in decimal.
	maxFactorDigits = 39
	// factorLimitBytes bounds the raw params and output.
	factorLimitBytes = 16 << 10
	// primeRounds is the Miller-Rabin round count for ProbablyPrime, which
	// also runs a Baillie-PSW test. Its bases derive from the number tested,
	// so the verdict is deterministic, and it is exact below 2^64.
	primeRounds = 20
)

// factorChecker checks a prime factorisation by multiplying the factors
// back together and testing each for primality.
//
// Params: {"n": "<decimal>"} with 2 ≤ n < 2^128.
// Output: {"factors": ["<decimal>", ...]}, the prime factors of n with
// multiplicity, in any order.
type factorChecker struct{}

type factorParams struct {
	N string `json:"n"`
}

type factorOutput struct {
	Factors []string `json:"factors"`
}

func (factorChecker) Name() string { return "factor" }

func (factorChecker) ParameterSchema() json.RawMessage {
	return json.RawMessage(`{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "factor parameters",
  "description": "Factor n into primes. n is a decimal string so that JSON numbers lose no precision; 2 <= n < 2^128.",
  "type": "object",
  "properties": {
    "n": {"type": "string", "pattern": "^[1-9][0-9]{0,38}$"}
  },
  "required": ["n"],
  "additionalProperties": false
}`)
}

func (factorChecker) OutputSchema() json.RawMessage {
	return json.RawMessage(`{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "factor output",
  "description": "The prime factors of n with multiplicity, in any order, as decimal strings; their product must be n.",
  "type": "object",
  "properties": {
    "factors": {
      "type": "array",
      "items": {"type": "string", "pattern": "^[1-9][0-9]{0,38}$"},
      "minItems": 1,
      "maxItems": 128
    }
  },
  "required": ["factors"],
  "additionalProperties": false
}`)
}

func (factorChecker) CheckParams(params json.RawMessage) error {
	_, err := parseFactorParams(params)
	return err
}

func parseFactorParams(params []byte) (*big.Int, error) {
	var s string
	err := readParams(params, factorLimitBytes, func(r *jsonReader, key string) (err error) {
		if key != "n" {
			return unknownMember(key)
		}
		s, err = r.str("n")
		return err
	})
	if err != nil {
		return nil, err
	}
	n, err := parseDecimal(s)
	if err != nil {
		return nil, invalid("n %v", err)
	}
	if n.Cmp(big.NewInt(2)) < 0 {
		return nil, invalid("n must be at least 2")
	}
	return n, nil
}

// parseDecimal parses a positive decimal integer of at most maxFactorBits
// bits, written without sign or leading zeros. Unlike big.Int.SetString
// it accepts one spelling per number, so the schema's pattern and the
// checker agree.
func parseDecimal(s string) (*big.Int, error) {
	switch {
	case s == "":
		return nil, errors.New("is missing or empty; want a decimal string")
	case len(s) > maxFactorDigits:
		return nil, fmt.Errorf("has %d digits; the limit is %d", len(s), maxFactorDigits)
	case s[0] == '0':
		return nil, errors.New("must be positive, without leading zeros")
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("%q is not a decimal string", s)
		}
	}
	n, _ := new(big.Int).SetString(s, 10)
	if n.BitLen() > maxFactorBits {
		return nil, fmt.Errorf("is not below 2^%d", maxFactorBits)
	}
	return n, nil
}

func (factorChecker) Check(params, output json.RawMessage) error {
	n, err := parseFactorParams(params)
	if err != nil {
		return err
	}
	var out []string
	err = readOutput(output, factorLimitBytes, func(r *jsonReader, key string) (err error) {
		if key != "factors" {
			return unknownMember(key)
		}
		out, err = r.strs("factors", maxFactorBits)
		return err
	})
	switch {
	case err != nil:
		return err
	case out == nil:
		return reject("factors is missing")
	case len(out) == 0:
		return reject("factors is empty")
	case len(out) >= n.BitLen():
		// Every factor is at least 2, so n, which is below 2^BitLen, has
		// fewer than BitLen of them. Refusing longer lists bounds the work.
		return reject("%d factors are more than n can have", len(out))
	}
	factors := make([]*big.Int, len(out))
	product := big.NewInt(1)
	for i, s := range out {
		f, err := parseDecimal(s)
		if err != nil {
			return reject("factors[%d] %v", i, err)
		}
		if f.Cmp(big.NewInt(1)) == 0 {
			return reject("factors[%d] is 1; every factor must be prime", i)
		}
		factors[i] = f
		product.Mul(product, f)
	}
	if product.Cmp(n) != 0 {
		if product.BitLen() <= maxFactorBits {
			return reject("the factors multiply to %s, not n = %s", product, n)
		}
		return reject("the factors multiply to a %d-bit number, not n = %s", product.BitLen(), n)
	}
	for i, f := range factors {
		if !f.ProbablyPrime(primeRounds) {
			return reject("factors[%d] = %s is not prime", i, f)
		}
	}
	return nil
}

func (factorChecker) generate(rng *rand.Rand, size int) (json.RawMessage, error) {
	bits := min(max(size, 8), maxFactorBits)
	p := randomPrime(rng, bits/2)
	q := randomPrime(rng, bits-bits/2)
	return json.Marshal(factorParams{N: new(big.Int).Mul(p, q).String()})
}

// randomPrime returns a uniformly drawn prime of exactly k bits, 2 ≤ k ≤ 64.
func randomPrime(rng *rand.Rand, k int) *big.Int {
	top := uint64(1) << (k - 1)
	for {
		v := new(big.Int).SetUint64(rng.Uint64()>>(64-k) | top | 1)
		if v.ProbablyPrime(primeRounds) {
			return v
		}
	}
}

func (factorChecker) solve(params json.RawMessage) (json.RawMessage, int64, error) {
	n, err := parseFactorParams(params)
	if err != nil {
		return nil, 0, err
	}
	var f factorizer
	if err := f.factor(n); err != nil {
		return nil, f.work, err
	}
	slices.SortFunc(f.primes, (*big.Int).Cmp)
	out := factorOutput{Factors: make([]string, len(f.primes))}
	for i, p := range f.primes {
		out.Factors[i] = p.String()
	}
	b, err := json.Marshal(out)
	return b, f.work, err
}

// smallPrimes are the trial divisors tried before Pollard's rho, which
// cannot split powers of tiny primes such as 4 = 2·2.
var smallPrimes = func() []int64 {
	var ps []int64
	for n := int64(2); n < 256; n++ {
		prime := true
		for _, p := range ps {
			if n%p == 0 {
				prime = false
				break
			}
		}
		if prime {
			ps = append(ps, n)
		}
	}
	return ps
}()

// factorizer factors a number into primes and counts its work: one unit
// per trial division and per evaluation of the rho polynomial.
type factorizer struct {
	primes []*big.Int
	work   int64
}

func (f *factorizer) factor(n *big.Int) error {
	m := new(big.Int).Set(n)
	q, r := new(big.Int), new(big.Int)
	for _, sp := range smallPrimes {
		p := big.NewInt(sp)
		if new(big.Int).Mul(p, p).Cmp(m) > 0 {
			break // m is 1 or a prime.
		}
		for {
			f.work++
			q.QuoRem(m, p, r)
			if r.Sign() != 0 {
				break
			}
			f.primes = append(f.primes, p)
			m.Set(q)
		}
	}
	return f.split(m)
}

// split appends the prime factors of m, which has no factor below 256.
func (f *factorizer) split(m *big.Int) error {
	if m.Cmp(big.NewInt(1)) == 0 {
		return nil
	}
	if m.ProbablyPrime(primeRounds) {
		f.primes = append(f.primes, m)
		return nil
	}
	// Each polynomial x²+c gives an independent chance; a few always suffice
	// in practice, and the bound keeps a pathological input from looping.
	for c := int64(1); c <= 64; c++ {
		if d := f.brent(m, big.NewInt(c)); d != nil {
			if err := f.split(d); err != nil {
				return err
			}
			return f.split(new(big.Int).Quo(m, d))
		}
	}
	return fmt.Errorf("pollard rho found no factor of %s", m)
}

// brent runs Brent's variant of Pollard's rho on the composite n with the
// polynomial x²+c, and returns a nontrivial factor of n, or nil if this
// polynomial finds none. It accumulates the differences in batches and
// takes one gcd per batch, which is what makes rho fast in practice.
func (f *factorizer) brent(n, c *big.Int) *big.Int {
	const batch = 128
	one := big.NewInt(1)
	x, y, ys := new(big.Int), big.NewInt(2), new(big.Int)
	q, g, t, d := big.NewInt(1), big.NewInt(1), new(big.Int), new(big.Int)
	step := func(v *big.Int) {
		t.Mul(v, v)
		t.Add(t, c)
		v.Mod(t, n)
		f.work++
	}
	for r := 1; g.Cmp(one) == 0; r *= 2 {
		x.Set(y)
		for range r {
			step(y)
		}
		for k := 0; k < r && g.Cmp(one) == 0; k += batch {
			ys.Set(y)
			for range min(batch, r-k) {
				step(y)
				d.Sub(x, y)
				t.Mul(q, d.Abs(d))
				q.Mod(t, n)
			}
			g.GCD(nil, nil, q, n)
		}
	}
	if g.Cmp(n) == 0 {
		// The batch overshot, or a difference was zero: retrace it one
		// step at a time. Some step in it shares a factor with n, so this
		// ends within the batch.
		for g.Cmp(one) == 0 || g.Cmp(n) == 0 {
			step(ys)
			d.Sub(x, ys)
			g.GCD(nil, nil, d.Abs(d), n)
			if g.Cmp(n) == 0 {
				return nil
			}
		}
	}
	return g
}
