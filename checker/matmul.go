package checker

import (
	"encoding/json"
	"math/rand/v2"
)

const (
	maxMatrixDim = 512
	// maxMatrixEntry bounds the entries of a and b. It keeps every entry of
	// a·b within maxProductEntry, which int64 holds exactly.
	maxMatrixEntry = 10_000_000
	// maxProductEntry bounds |(a·b)[i][j]| ≤ maxMatrixDim·maxMatrixEntry²
	// = 5.12e16 < 2^56. The checker rejects any output entry beyond it, so
	// an output entry differs from the true one by less than 2^57 < p61,
	// and a·b = c holds over the integers exactly when it holds modulo p61.
	maxProductEntry = maxMatrixDim * maxMatrixEntry * maxMatrixEntry
	// matmulLimitBytes bounds the raw params and output.
	matmulLimitBytes = 16 << 20
	// matmulRounds is the number of Freivalds rounds. Each draws the
	// vector r uniformly from F_p61^k rather than from {0,1}^k: a wrong c
	// then passes a round with probability at most 1/p61 instead of 1/2,
	// so two rounds err with probability at most 2^-122, where twenty 0/1
	// rounds would cost ten times as many passes to reach 2^-20.
	matmulRounds = 2
	// matmulValueRange bounds generated entries, so that agents whose JSON
	// numbers are doubles can multiply them exactly.
	matmulValueRange = 1000
)

// matmulChecker checks a matrix product with Freivalds' algorithm: instead
// of recomputing a·b in n³ steps, it compares a·(b·r) with c·r for random
// vectors r in n² steps.
//
// Params: {"a": [[<int64>, ...], ...], "b": [[...], ...]}, a is n×m and b is
// m×k with 1 ≤ n, m, k ≤ 512 and entries of magnitude at most 10^7.
// Output: {"c": [[<int64>, ...], ...]}, the n×k product a·b.
type matmulChecker struct{}

type matmulParams struct {
	A [][]int64 `json:"a"`
	B [][]int64 `json:"b"`
}

type matmulOutput struct {
	C [][]int64 `json:"c"`
}

func (matmulChecker) Name() string { return "matmul" }

func (matmulChecker) ParameterSchema() json.RawMessage {
	return json.RawMessage(`{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "matmul parameters",
  "description": "Multiply the n×m matrix a by the m×k matrix b, both given as arrays of rows. The rows of a must have as many entries as b has rows, and all rows of a matrix the same length.",
  "type": "object",
  "properties": {
    "a": {"$ref": "#/$defs/matrix"},
    "b": {"$ref": "#/$defs/matrix"}
  },
  "required": ["a", "b"],
  "additionalProperties": false,
  "$defs": {
    "matrix": {
      "type": "array",
      "minItems": 1,
      "maxItems": 512,
      "items": {
        "type": "array",
        "minItems": 1,
        "maxItems": 512,
        "items": {"type": "integer", "minimum": -10000000, "maximum": 10000000}
      }
    }
  }
}`)
}

func (matmulChecker) OutputSchema() json.RawMessage {
	return json.RawMessage(`{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "matmul output",
  "description": "The n×k product a·b as an array of rows, computed exactly over the integers.",
  "type": "object",
  "properties": {
    "c": {
      "type": "array",
      "minItems": 1,
      "maxItems": 512,
      "items": {
        "type": "array",
        "minItems": 1,
        "maxItems": 512,
        "items": {"type": "integer", "minimum": -51200000000000000, "maximum": 51200000000000000}
      }
    }
  },
  "required": ["c"],
  "additionalProperties": false
}`)
}

func (matmulChecker) CheckParams(params json.RawMessage) error {
	_, err := parseMatmulParams(params)
	return err
}

func parseMatmulParams(params []byte) (matmulParams, error) {
	var p matmulParams
	err := readParams(params, matmulLimitBytes, func(r *jsonReader, key string) (err error) {
		switch key {
		case "a":
			p.A, err = r.matrix("a", maxMatrixDim)
		case "b":
			p.B, err = r.matrix("b", maxMatrixDim)
		default:
			err = unknownMember(key)
		}
		return err
	})
	if err != nil {
		return p, err
	}
	if err := checkMatrix("a", p.A, -1); err != nil {
		return p, err
	}
	if err := checkMatrix("b", p.B, len(p.A[0])); err != nil {
		return p, err
	}
	return p, nil
}

// checkMatrix reports whether m is a rectangular matrix within the limits,
// with the given number of rows unless rows is negative.
func checkMatrix(name string, m [][]int64, rows int) error {
	switch {
	case m == nil:
		return invalid("%s is missing", name)
	case len(m) == 0 || len(m) > maxMatrixDim:
		return invalid("%s has %d rows; want 1 to %d", name, len(m), maxMatrixDim)
	case rows >= 0 && len(m) != rows:
		return invalid("%s has %d rows; want %d, the number of columns of a", name, len(m), rows)
	}
	cols := len(m[0])
	if cols == 0 || cols > maxMatrixDim {
		return invalid("%s has %d columns; want 1 to %d", name, cols, maxMatrixDim)
	}
	for i, row := range m {
		if len(row) != cols {
			return invalid("%s[%d] has %d entries; want %d like %s[0]", name, i, len(row), cols, name)
		}
		for j, x := range row {
			if x < -maxMatrixEntry || x > maxMatrixEntry {
				return invalid("%s[%d][%d] is beyond ±%d", name, i, j, maxMatrixEntry)
			}
		}
	}
	return nil
}

func (matmulChecker) Check(params, output json.RawMessage) error {
	p, err := parseMatmulParams(params)
	if err != nil {
		return err
	}
	var out matmulOutput
	err = readOutput(output, matmulLimitBytes, func(r *jsonReader, key string) (err error) {
		if key != "c" {
			return unknownMember(key)
		}
		out.C, err = r.matrix("c", maxMatrixDim)
		return err
	})
	if err != nil {
		return err
	}
	n, k := len(p.A), len(p.B[0])
	if out.C == nil {
		return reject("c is missing")
	}
	if len(out.C) != n {
		return reject("c has %d rows; want %d", len(out.C), n)
	}
	for i, row := range out.C {
		if len(row) != k {
			return reject("c[%d] has %d entries; want %d", i, len(row), k)
		}
		for j, x := range row {
			if x < -maxProductEntry || x > maxProductEntry {
				return reject("c[%d][%d] is beyond ±%d, the most any entry of a·b can be", i, j, int64(maxProductEntry))
			}
		}
	}
	rng := verdictRNG("matmul", params, output)
	r := make([]uint64, k)
	for range matmulRounds {
		for j := range r {
			r[j] = fieldElement(rng)
		}
		abr := mulVec(p.A, mulVec(p.B, r))
		cr := mulVec(out.C, r)
		for i := range cr {
			if abr[i] != cr[i] {
				// Row i of a·b − c maps r to a nonzero value, so that row
				// is certainly nonzero: c[i] is wrong.
				return reject("c[%d] differs from row %d of a·b", i, i)
			}
		}
	}
	return nil
}

// mulVec returns m·v over F_p61.
func mulVec(m [][]int64, v []uint64) []uint64 {
	out := make([]uint64, len(m))
	for i, row := range m {
		var s uint64
		for j, x := range row {
			s = addmod(s, mulmod(toField(x), v[j]))
		}
		out[i] = s
	}
	return out
}

func (matmulChecker) generate(rng *rand.Rand, size int) (json.RawMessage, error) {
	n := min(max(size, 1), maxMatrixDim)
	return json.Marshal(matmulParams{A: randomMatrix(rng, n), B: randomMatrix(rng, n)})
}

func randomMatrix(rng *rand.Rand, n int) [][]int64 {
	m := make([][]int64, n)
	for i := range m {
		m[i] = make([]int64, n)
		for j := range m[i] {
			m[i][j] = rng.Int64N(2*matmulValueRange+1) - matmulValueRange
		}
	}
	return m
}

// solve multiplies the schoolbook way; the work is n·m·k multiply-adds.
// The parameter bounds make int64 exact.
func (matmulChecker) solve(params json.RawMessage) (json.RawMessage, int64, error) {
	p, err := parseMatmulParams(params)
	if err != nil {
		return nil, 0, err
	}
	out, err := json.Marshal(matmulOutput{C: multiply(p.A, p.B)})
	return out, int64(len(p.A)) * int64(len(p.B)) * int64(len(p.B[0])), err
}

// multiply returns a·b, iterating in i-k-j order so the inner loop walks
// rows of b and c contiguously.
func multiply(a, b [][]int64) [][]int64 {
	c := make([][]int64, len(a))
	for i, arow := range a {
		crow := make([]int64, len(b[0]))
		for k, x := range arow {
			for j, y := range b[k] {
				crow[j] += x * y
			}
		}
		c[i] = crow
	}
	return c
}
