package checker

import (
	"encoding/json"
	"errors"
	"math/bits"
	"math/rand/v2"
	"slices"
)

const (
	maxSortItems = 1_000_000
	// sortLimitBytes bounds the raw params and output: a million 64-bit
	// integers take at most 21 MB in JSON.
	sortLimitBytes = 32 << 20
	// sortRounds is the number of multiset fingerprints compared. Each
	// errs with probability at most n/p61 ≤ 2^-41, so two err with
	// probability at most 2^-82.
	sortRounds = 2
	// sortValueRange bounds generated items, so that agents whose JSON
	// numbers are doubles can sort them exactly.
	sortValueRange = 1_000_000_000
)

// sortChecker checks a sorted list in linear time: one pass confirms the
// order, and a polynomial fingerprint confirms that the output holds the
// same multiset of items as the input, without sorting either.
//
// Params: {"items": [<int64>, ...], "order": "asc"|"desc"}, at most 1,000,000
// items; order defaults to "asc".
// Output: {"items": [<int64>, ...]}, the input items in that order.
type sortChecker struct{}

type sortParams struct {
	Items []int64 `json:"items"`
	Order string  `json:"order,omitempty"`
}

type sortOutput struct {
	Items []int64 `json:"items"`
}

func (sortChecker) Name() string { return "sort" }

func (sortChecker) ParameterSchema() json.RawMessage {
	return json.RawMessage(`{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "sort parameters",
  "description": "Sort the items, keeping duplicates.",
  "type": "object",
  "properties": {
    "items": {
      "type": "array",
      "items": {"type": "integer", "minimum": -9223372036854775808, "maximum": 9223372036854775807},
      "maxItems": 1000000
    },
    "order": {"enum": ["asc", "desc"], "default": "asc"}
  },
  "required": ["items"],
  "additionalProperties": false
}`)
}

func (sortChecker) OutputSchema() json.RawMessage {
	return json.RawMessage(`{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "sort output",
  "description": "The input items, duplicates included, in the requested order.",
  "type": "object",
  "properties": {
    "items": {
      "type": "array",
      "items": {"type": "integer", "minimum": -9223372036854775808, "maximum": 9223372036854775807},
      "maxItems": 1000000
    }
  },
  "required": ["items"],
  "additionalProperties": false
}`)
}

func (sortChecker) CheckParams(params json.RawMessage) error {
	_, err := parseSortParams(params)
	return err
}

func parseSortParams(params []byte) (sortParams, error) {
	var p sortParams
	err := readParams(params, sortLimitBytes, func(r *jsonReader, key string) (err error) {
		switch key {
		case "items":
			p.Items, err = r.ints("items", maxSortItems)
		case "order":
			p.Order, err = r.str("order")
			if err == nil && p.Order == "" {
				err = errors.New(`order must be "asc" or "desc"`)
			}
		default:
			err = unknownMember(key)
		}
		return err
	})
	switch {
	case err != nil:
		return p, err
	case p.Items == nil:
		return p, invalid("items is missing")
	case p.Order == "":
		p.Order = "asc"
	case p.Order != "asc" && p.Order != "desc":
		return p, invalid(`order must be "asc" or "desc"`)
	}
	return p, nil
}

func (sortChecker) Check(params, output json.RawMessage) error {
	p, err := parseSortParams(params)
	if err != nil {
		return err
	}
	var out sortOutput
	err = readOutput(output, sortLimitBytes, func(r *jsonReader, key string) (err error) {
		if key != "items" {
			return unknownMember(key)
		}
		out.Items, err = r.ints("items", maxSortItems)
		return err
	})
	if err != nil {
		return err
	}
	if out.Items == nil {
		return reject("items is missing")
	}
	if len(out.Items) != len(p.Items) {
		return reject("output has %d items; want %d", len(out.Items), len(p.Items))
	}
	for i := 1; i < len(out.Items); i++ {
		prev, cur := out.Items[i-1], out.Items[i]
		if p.Order == "asc" && cur < prev || p.Order == "desc" && cur > prev {
			return reject("items[%d] = %d is out of %s order after items[%d] = %d", i, cur, p.Order, i-1, prev)
		}
	}
	rng := verdictRNG("sort", params, output)
	for range sortRounds {
		r, s := fieldElement(rng), fieldElement(rng)
		if multisetFingerprint(p.Items, r, s) != multisetFingerprint(out.Items, r, s) {
			return reject("items are not a permutation of the input")
		}
	}
	return nil
}

// multisetFingerprint evaluates ∏ (r − (lo(x) + s·hi(x))) mod p61 over the
// items x, where lo and hi are the low and high 32 bits of x. Splitting x
// makes the encoding injective although int64 is larger than the field.
// Two different multisets give two different polynomials in r and s of
// degree n, which agree at a random point with probability at most n/p61.
func multisetFingerprint(items []int64, r, s uint64) uint64 {
	f := uint64(1)
	for _, x := range items {
		u := uint64(x)
		e := addmod(u&0xffffffff, mulmod(s, u>>32))
		f = mulmod(f, submod(r, e))
	}
	return f
}

func (sortChecker) generate(rng *rand.Rand, size int) (json.RawMessage, error) {
	p := sortParams{Items: make([]int64, min(max(size, 0), maxSortItems)), Order: "asc"}
	for i := range p.Items {
		p.Items[i] = rng.Int64N(2*sortValueRange+1) - sortValueRange
	}
	if rng.IntN(2) == 1 {
		p.Order = "desc"
	}
	return json.Marshal(p)
}

// solve sorts a copy of the items; the work is n·⌈log2 n⌉, the order of
// the comparisons a comparison sort makes.
func (sortChecker) solve(params json.RawMessage) (json.RawMessage, int64, error) {
	p, err := parseSortParams(params)
	if err != nil {
		return nil, 0, err
	}
	items := make([]int64, len(p.Items))
	copy(items, p.Items)
	slices.Sort(items)
	if p.Order == "desc" {
		slices.Reverse(items)
	}
	work := int64(len(items))
	if len(items) > 0 {
		work *= int64(bits.Len(uint(len(items) - 1)))
	}
	out, err := json.Marshal(sortOutput{Items: items})
	return out, work, err
}
