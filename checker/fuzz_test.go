package checker_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strconv"
	"testing"

	"github.com/agentmarket/agentmarket/checker"
)

// The fuzz targets feed arbitrary bytes as params and output. Whatever the
// bytes, Check must not panic, must classify its error, must give the same
// verdict twice, must keep its message short, and must never accept an
// output that an independent, brute-force check of the same JSON rejects.
// FuzzCheckSort also checks the converse for the JSON reader: a correct
// answer passes however it is spelled.

// maxMessage bounds an error message; inputs run to megabytes, and a
// message must not echo them.
const maxMessage = 300

// checkInvariants runs c.Check and asserts the properties every verdict
// has, returning the verdict.
func checkInvariants(t *testing.T, c checker.Checker, params, output []byte) error {
	t.Helper()
	err := c.Check(params, output)
	if again := c.Check(params, output); fmt.Sprint(again) != fmt.Sprint(err) {
		t.Fatalf("verdicts differ: %v, then %v", err, again)
	}
	if err == nil {
		return nil
	}
	blamesParams, blamesOutput := errors.Is(err, checker.ErrInvalidParams), errors.Is(err, checker.ErrRejected)
	if blamesParams == blamesOutput {
		t.Fatalf("error %q blames params: %v, output: %v; want exactly one", err, blamesParams, blamesOutput)
	}
	if paramsErr := c.CheckParams(params); blamesParams != (paramsErr != nil) {
		t.Fatalf("Check = %v, but CheckParams = %v", err, paramsErr)
	}
	if len(err.Error()) > maxMessage {
		t.Fatalf("error message has %d bytes: %.100s…", len(err.Error()), err)
	}
	return err
}

// mustUnmarshal decodes JSON that the checker accepted, so it must decode.
func mustUnmarshal(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("the checker accepted JSON that encoding/json rejects: %v", err)
	}
}

// addSeeds adds params and output pairs to the corpus, including solved
// generated tasks.
func addSeeds(f *testing.F, name string, sizes []int, pairs ...[2]string) {
	for _, p := range pairs {
		f.Add([]byte(p[0]), []byte(p[1]))
	}
	for _, size := range sizes {
		params := MustGenerate(f, name, uint64(size), size)
		out, _ := MustSolve(f, name, params)
		f.Add([]byte(params), []byte(out))
	}
}

func FuzzCheckFactor(f *testing.F) {
	addSeeds(f, "factor", []int{8, 16, 24},
		[2]string{`{"n":"15"}`, `{"factors":["3","5"]}`},
		[2]string{`{"n":"12"}`, `{"factors":["2","2","3"]}`},
		[2]string{`{"n":"561"}`, `{"factors":["561"]}`},
		[2]string{`{"n":"561"}`, `{"factors":["3","11","17"]}`},
		[2]string{`{"n":"2"}`, `{"factors":["2"]}`},
		[2]string{`{"n":"15"}`, `{"factors":["1","15"]}`},
	)
	c := MustGet(f, "factor")
	f.Fuzz(func(t *testing.T, params, output []byte) {
		if checkInvariants(t, c, params, output) != nil {
			return
		}
		var p struct{ N string }
		var o struct{ Factors []string }
		mustUnmarshal(t, params, &p)
		mustUnmarshal(t, output, &o)
		n, ok := new(big.Int).SetString(p.N, 10)
		if !ok || n.Cmp(big.NewInt(2)) < 0 {
			t.Fatalf("accepted n = %q", p.N)
		}
		product := big.NewInt(1)
		for _, s := range o.Factors {
			factor, ok := new(big.Int).SetString(s, 10)
			if !ok || factor.String() != s {
				t.Fatalf("accepted factor %q", s)
			}
			if factor.IsUint64() && factor.Uint64() < 1<<32 && !isPrimeByTrialDivision(factor.Uint64()) {
				t.Fatalf("accepted composite factor %s", s)
			}
			product.Mul(product, factor)
		}
		if product.Cmp(n) != 0 {
			t.Fatalf("accepted factors of product %s for n = %s", product, n)
		}
	})
}

func isPrimeByTrialDivision(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// powHash is sha256(prefix || nonce as 8 big-endian bytes).
func powHash(prefix []byte, nonce uint64) [32]byte {
	return sha256.Sum256(binary.BigEndian.AppendUint64(slices.Clone(prefix), nonce))
}

// leadingZeroBits counts the leading zero bits of h the long way.
func leadingZeroBits(h [32]byte) int {
	return 256 - new(big.Int).SetBytes(h[:]).BitLen()
}

func FuzzCheckPow(f *testing.F) {
	good, bad := nonces([]byte{0xff}, 6)
	addSeeds(f, "pow", []int{1, 4, 8},
		[2]string{`{"prefix":"ff","difficulty":6}`, fmt.Sprintf(`{"nonce":%d}`, good)},
		[2]string{`{"prefix":"ff","difficulty":6}`, fmt.Sprintf(`{"nonce":%d}`, bad)},
		[2]string{`{"prefix":"00","difficulty":32}`, `{"nonce":18446744073709551615}`},
	)
	c := MustGet(f, "pow")
	f.Fuzz(func(t *testing.T, params, output []byte) {
		if checkInvariants(t, c, params, output) != nil {
			return
		}
		var p struct {
			Prefix     string
			Difficulty int
		}
		var o struct{ Nonce uint64 }
		mustUnmarshal(t, params, &p)
		mustUnmarshal(t, output, &o)
		prefix, err := hex.DecodeString(p.Prefix)
		if err != nil || len(prefix) == 0 || p.Difficulty < 1 || p.Difficulty > 32 {
			t.Fatalf("accepted params %q", params)
		}
		if z := leadingZeroBits(powHash(prefix, o.Nonce)); z < p.Difficulty {
			t.Fatalf("accepted a nonce with %d leading zero bits for difficulty %d", z, p.Difficulty)
		}
	})
}

func FuzzCheckSort(f *testing.F) {
	addSeeds(f, "sort", []int{0, 1, 5, 40},
		[2]string{`{"items":[3,1,2,1]}`, `{"items":[1,1,2,3]}`},
		[2]string{`{"items":[3,1,2,1],"order":"desc"}`, `{"items":[3,2,1,1]}`},
		[2]string{`{"items":[3,1,2,1]}`, `{"items":[1,2,2,3]}`},
		[2]string{`{"items":[0,1]}`, `{"items":[0,2305843009213693952]}`},
		[2]string{`{"items":[-9223372036854775808,9223372036854775807]}`, `{"items":[-9223372036854775808,9223372036854775807]}`},
		[2]string{`{"items":[0,-0,10]}`, " {\"\\u0069tems\" :\n[ -0 , 0,10 ] } "},
	)
	c := MustGet(f, "sort")
	f.Fuzz(func(t *testing.T, params, output []byte) {
		err := checkInvariants(t, c, params, output)
		if errors.Is(err, checker.ErrInvalidParams) {
			return
		}
		var p struct {
			Items []int64
			Order string
		}
		mustUnmarshal(t, params, &p)
		want := slices.Clone(p.Items)
		slices.Sort(want)
		switch p.Order {
		case "", "asc":
		case "desc":
			slices.Reverse(want)
		default:
			t.Fatalf("accepted order %q", p.Order)
		}
		if err != nil {
			// However a correct answer is spelled, it must pass.
			if spellsInts(output, "items", want) {
				t.Fatalf("rejected a correct answer: %v", err)
			}
			return
		}
		var o struct{ Items []int64 }
		mustUnmarshal(t, output, &o)
		if !slices.Equal(o.Items, want) {
			t.Fatalf("accepted %v for %v sorted %q", o.Items, p.Items, p.Order)
		}
	})
}

// spellsInts reports whether encoding/json reads data as an object with
// the one member key, an array of integers, written without fraction or
// exponent, equal to want.
func spellsInts(data []byte, key string, want []int64) bool {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	if tok, err := d.Token(); err != nil || tok != key {
		return false
	}
	var nums []json.Number
	if err := d.Decode(&nums); err != nil || nums == nil || len(nums) != len(want) {
		return false
	}
	if tok, err := d.Token(); err != nil || tok != json.Delim('}') {
		return false
	}
	if _, err := d.Token(); err != io.EOF {
		return false
	}
	for i, n := range nums {
		if x, err := strconv.ParseInt(string(n), 10, 64); err != nil || x != want[i] {
			return false
		}
	}
	return true
}

func FuzzCheckMatmul(f *testing.F) {
	addSeeds(f, "matmul", []int{1, 2, 3},
		[2]string{`{"a":[[1,2],[3,4]],"b":[[5,6],[7,8]]}`, `{"c":[[19,22],[43,50]]}`},
		[2]string{`{"a":[[1,2],[3,4]],"b":[[5,6],[7,8]]}`, `{"c":[[19,22],[43,51]]}`},
		[2]string{`{"a":[[1,2,3]],"b":[[4],[5],[6]]}`, `{"c":[[32]]}`},
		[2]string{`{"a":[[10000000]],"b":[[-10000000]]}`, `{"c":[[-100000000000000]]}`},
		[2]string{`{"a":[[1]],"b":[[1]]}`, `{"c":[[2305843009213693952]]}`},
	)
	c := MustGet(f, "matmul")
	f.Fuzz(func(t *testing.T, params, output []byte) {
		if checkInvariants(t, c, params, output) != nil {
			return
		}
		var p struct{ A, B [][]int64 }
		var o struct{ C [][]int64 }
		mustUnmarshal(t, params, &p)
		mustUnmarshal(t, output, &o)
		if len(o.C) != len(p.A) {
			t.Fatalf("accepted %d rows for a with %d", len(o.C), len(p.A))
		}
		for i, arow := range p.A {
			if len(arow) != len(p.B) || len(o.C[i]) != len(p.B[0]) {
				t.Fatalf("accepted mismatched dimensions")
			}
			for j, got := range o.C[i] {
				want := new(big.Int)
				for k, x := range arow {
					if len(p.B[k]) != len(p.B[0]) {
						t.Fatalf("accepted ragged b")
					}
					want.Add(want, new(big.Int).Mul(big.NewInt(x), big.NewInt(p.B[k][j])))
				}
				if want.Cmp(big.NewInt(got)) != 0 {
					t.Fatalf("accepted c[%d][%d] = %d, want %s", i, j, got, want)
				}
			}
		}
	})
}
