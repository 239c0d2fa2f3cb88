package checker_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/agentmarket/agentmarket/checker"
)

// MustGet returns the named checker or fails the test.
func MustGet(tb testing.TB, name string) checker.Checker {
	tb.Helper()
	c, ok := checker.Get(name)
	if !ok {
		tb.Fatalf("Get(%q): not registered", name)
	}
	return c
}

// MustGenerate returns params for a task of the named checker, drawn from a
// generator seeded with seed.
func MustGenerate(tb testing.TB, name string, seed uint64, size int) json.RawMessage {
	tb.Helper()
	params, err := checker.Generate(name, rand.New(rand.NewPCG(seed, 0)), size)
	if err != nil {
		tb.Fatalf("Generate(%s, seed %d, size %d): %v", name, seed, size, err)
	}
	return params
}

// MustSolve returns a correct output for params and the work it took.
func MustSolve(tb testing.TB, name string, params json.RawMessage) (json.RawMessage, int64) {
	tb.Helper()
	out, work, err := checker.Solve(name, params)
	if err != nil {
		tb.Fatalf("Solve(%s, %.200s): %v", name, params, err)
	}
	return out, work
}

func TestNamesAreSortedAndRegistered(t *testing.T) {
	names := checker.Names()
	want := []string{"factor", "matmul", "pow", "sort"}
	if !slices.Equal(names, want) {
		t.Fatalf("Names() = %v, want %v", names, want)
	}
	for _, n := range names {
		if got := MustGet(t, n).Name(); got != n {
			t.Errorf("Get(%q).Name() = %q", n, got)
		}
	}
	if _, ok := checker.Get("nope"); ok {
		t.Error(`Get("nope") found a checker`)
	}
}

func TestUnknownCheckerIsAnError(t *testing.T) {
	if _, err := checker.Generate("nope", rand.New(rand.NewPCG(1, 2)), 8); !errors.Is(err, checker.ErrUnknownChecker) {
		t.Errorf("Generate: err = %v, want ErrUnknownChecker", err)
	}
	if _, _, err := checker.Solve("nope", json.RawMessage(`{}`)); !errors.Is(err, checker.ErrUnknownChecker) {
		t.Errorf("Solve: err = %v, want ErrUnknownChecker", err)
	}
}

func TestSchemasAreDraft202012Objects(t *testing.T) {
	for _, name := range checker.Names() {
		c := MustGet(t, name)
		for kind, schema := range map[string]json.RawMessage{"parameters": c.ParameterSchema(), "output": c.OutputSchema()} {
			t.Run(name+"/"+kind, func(t *testing.T) {
				var s struct {
					Schema               string         `json:"$schema"`
					Type                 string         `json:"type"`
					Properties           map[string]any `json:"properties"`
					Required             []string       `json:"required"`
					AdditionalProperties *bool          `json:"additionalProperties"`
				}
				if err := json.Unmarshal(schema, &s); err != nil {
					t.Fatalf("schema is not JSON: %v", err)
				}
				if s.Schema != "https://json-schema.org/draft/2020-12/schema" || s.Type != "object" {
					t.Errorf("$schema = %q, type = %q", s.Schema, s.Type)
				}
				if s.AdditionalProperties == nil || *s.AdditionalProperties {
					t.Error("additionalProperties is not false")
				}
				for _, r := range s.Required {
					if _, ok := s.Properties[r]; !ok {
						t.Errorf("required %q is not a property", r)
					}
				}
			})
		}
	}
}

// checkCase is one verdict the table tests expect.
type checkCase struct {
	name     string
	checker  string
	params   string
	output   string
	want     error  // nil, checker.ErrInvalidParams or checker.ErrRejected
	contains string // a fragment the error message must hold
}

func runCheckCases(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := MustGet(t, tc.checker)
			err := c.Check(json.RawMessage(tc.params), json.RawMessage(tc.output))
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("Check = %v, want nil", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("Check = %v, want an error wrapping %q", err, tc.want)
			case err != nil && !strings.Contains(err.Error(), tc.contains):
				t.Errorf("Check = %.300q, want it to mention %q", err, tc.contains)
			case err != nil && len(err.Error()) > maxMessage:
				t.Errorf("Check's message has %d bytes, more than %d", len(err.Error()), maxMessage)
			}
			if again := c.Check(json.RawMessage(tc.params), json.RawMessage(tc.output)); fmt.Sprint(again) != fmt.Sprint(err) {
				t.Errorf("second Check = %v, first = %v", again, err)
			}
			paramsErr := c.CheckParams(json.RawMessage(tc.params))
			if errors.Is(err, checker.ErrInvalidParams) != (paramsErr != nil) {
				t.Errorf("CheckParams = %v, but Check = %v", paramsErr, err)
			}
		})
	}
}

func TestCheckFactor(t *testing.T) {
	const n15 = `{"n":"15"}`
	runCheckCases(t, []checkCase{
		{"Correct", "factor", n15, `{"factors":["3","5"]}`, nil, ""},
		{"AnyOrder", "factor", n15, `{"factors":["5","3"]}`, nil, ""},
		{"Prime", "factor", `{"n":"13"}`, `{"factors":["13"]}`, nil, ""},
		{"Multiplicity", "factor", `{"n":"12"}`, `{"factors":["2","3","2"]}`, nil, ""},
		{"SemiprimeOf121Bits", "factor", `{"n":"1329227995784916015866073631529372603"}`,
			`{"factors":["1152921504606847009","1152921504606847067"]}`, nil, ""},
		{"WrongFactor", "factor", n15, `{"factors":["3","7"]}`, checker.ErrRejected, "multiply to 21, not n = 15"},
		{"ProductMismatch", "factor", n15, `{"factors":["3"]}`, checker.ErrRejected, "multiply to 3"},
		{"CompositeFactor", "factor", n15, `{"factors":["15"]}`, checker.ErrRejected, "factors[0] = 15 is not prime"},
		{"CompositeAmongPrimes", "factor", `{"n":"12"}`, `{"factors":["3","4"]}`, checker.ErrRejected, "factors[1] = 4 is not prime"},
		{"CarmichaelNumber", "factor", `{"n":"561"}`, `{"factors":["561"]}`, checker.ErrRejected, "not prime"},
		{"StrongPseudoprimeBase2", "factor", `{"n":"2047"}`, `{"factors":["2047"]}`, checker.ErrRejected, "not prime"},
		{"FactorOne", "factor", n15, `{"factors":["1","15"]}`, checker.ErrRejected, "factors[0] is 1"},
		{"FactorZero", "factor", n15, `{"factors":["0"]}`, checker.ErrRejected, "factors[0] must be positive"},
		{"LeadingZero", "factor", n15, `{"factors":["03","5"]}`, checker.ErrRejected, "leading zeros"},
		{"Signed", "factor", n15, `{"factors":["+3","5"]}`, checker.ErrRejected, "not a decimal string"},
		{"NumberNotString", "factor", n15, `{"factors":[3,5]}`, checker.ErrRejected, "want a string"},
		{"TooManyFactors", "factor", n15, `{"factors":["3","5","1","1"]}`, checker.ErrRejected, "more than n can have"},
		{"Missing", "factor", n15, `{}`, checker.ErrRejected, "factors is missing"},
		{"Empty", "factor", n15, `{"factors":[]}`, checker.ErrRejected, "factors is empty"},
		{"UnknownField", "factor", n15, `{"factors":["3","5"],"proof":1}`, checker.ErrRejected, `unknown member "proof"`},
		{"TrailingData", "factor", n15, `{"factors":["3","5"]} {}`, checker.ErrRejected, "data after the value"},
		{"MalformedOutput", "factor", n15, `{"factors":["3",`, checker.ErrRejected, "malformed JSON"},
		{"FactorOf128Bits", "factor", `{"n":"340282366920938463463374607431768211455"}`, `{"factors":["340282366920938463463374607431768211455"]}`, checker.ErrRejected, "is not prime"},
		{"NIsOne", "factor", `{"n":"1"}`, `{"factors":["1"]}`, checker.ErrInvalidParams, "at least 2"},
		{"NIsNumber", "factor", `{"n":15}`, `{"factors":["3","5"]}`, checker.ErrInvalidParams, "n: want a string, got a number"},
		{"NMissing", "factor", `{}`, `{"factors":["3","5"]}`, checker.ErrInvalidParams, "n is missing"},
		{"NIs2To128", "factor", `{"n":"340282366920938463463374607431768211456"}`, `{"factors":["2"]}`, checker.ErrInvalidParams, "not below 2^128"},
		{"NTooLong", "factor", `{"n":"1` + strings.Repeat("0", 60) + `"}`, `{"factors":["2"]}`, checker.ErrInvalidParams, "61 digits"},
		{"ParamsNotObject", "factor", `[]`, `{"factors":["2"]}`, checker.ErrInvalidParams, "want an object"},
		{"ParamsEmpty", "factor", ``, `{"factors":["2"]}`, checker.ErrInvalidParams, "unexpected end"},
	})
}

// nonces returns a nonce that meets the difficulty for prefix and one that
// falls short, found by brute force.
func nonces(prefix []byte, difficulty int) (good, bad uint64) {
	good, bad = ^uint64(0), ^uint64(0)
	for nonce := uint64(0); good == ^uint64(0) || bad == ^uint64(0); nonce++ {
		if leadingZeroBits(powHash(prefix, nonce)) >= difficulty {
			good = min(good, nonce)
		} else {
			bad = min(bad, nonce)
		}
	}
	return good, bad
}

func TestCheckPow(t *testing.T) {
	const params = `{"prefix":"a0b1c2d3","difficulty":10}`
	good, bad := nonces([]byte{0xa0, 0xb1, 0xc2, 0xd3}, 10)
	runCheckCases(t, []checkCase{
		{"Correct", "pow", params, fmt.Sprintf(`{"nonce":%d}`, good), nil, ""},
		{"UpperCaseHex", "pow", `{"prefix":"A0B1C2D3","difficulty":10}`, fmt.Sprintf(`{"nonce":%d}`, good), nil, ""},
		{"InsufficientBits", "pow", params, fmt.Sprintf(`{"nonce":%d}`, bad), checker.ErrRejected, "want at least 10"},
		{"MaxNonce", "pow", `{"prefix":"00","difficulty":32}`, `{"nonce":18446744073709551615}`, checker.ErrRejected, "want at least 32"},
		{"NonceOverflows", "pow", params, `{"nonce":18446744073709551616}`, checker.ErrRejected, "want a non-negative 64-bit integer"},
		{"NegativeNonce", "pow", params, `{"nonce":-1}`, checker.ErrRejected, "want a non-negative 64-bit integer"},
		{"FractionalNonce", "pow", params, `{"nonce":1.5}`, checker.ErrRejected, "nonce"},
		{"StringNonce", "pow", params, fmt.Sprintf(`{"nonce":"%d"}`, good), checker.ErrRejected, "nonce"},
		{"MissingNonce", "pow", params, `{}`, checker.ErrRejected, "nonce is missing"},
		{"NullNonce", "pow", params, `{"nonce":null}`, checker.ErrRejected, "nonce: want a non-negative 64-bit integer, got null"},
		{"DifficultyZero", "pow", `{"prefix":"00","difficulty":0}`, `{"nonce":0}`, checker.ErrInvalidParams, "difficulty must be 1 to 32"},
		{"Difficulty33", "pow", `{"prefix":"00","difficulty":33}`, `{"nonce":0}`, checker.ErrInvalidParams, "difficulty must be 1 to 32"},
		{"OddHex", "pow", `{"prefix":"abc","difficulty":1}`, `{"nonce":0}`, checker.ErrInvalidParams, "prefix is not hex"},
		{"NotHex", "pow", `{"prefix":"zz","difficulty":1}`, `{"nonce":0}`, checker.ErrInvalidParams, "prefix is not hex"},
		{"EmptyPrefix", "pow", `{"prefix":"","difficulty":1}`, `{"nonce":0}`, checker.ErrInvalidParams, "prefix must be 1 to 64 bytes"},
		{"LongPrefix", "pow", `{"prefix":"` + strings.Repeat("00", 65) + `","difficulty":1}`, `{"nonce":0}`, checker.ErrInvalidParams, "prefix must be 1 to 64 bytes"},
		{"OversizeParams", "pow", `{"prefix":"00","difficulty":1` + strings.Repeat(" ", 2000) + `}`, `{"nonce":0}`, checker.ErrInvalidParams, "exceeds the limit"},
	})
}

func TestCheckSort(t *testing.T) {
	const params = `{"items":[3,1,2,1]}`
	million := `{"items":[` + strings.Repeat("0,", 1_000_000) + `0]}`
	runCheckCases(t, []checkCase{
		{"Ascending", "sort", params, `{"items":[1,1,2,3]}`, nil, ""},
		{"Descending", "sort", `{"items":[3,1,2,1],"order":"desc"}`, `{"items":[3,2,1,1]}`, nil, ""},
		{"Empty", "sort", `{"items":[]}`, `{"items":[]}`, nil, ""},
		{"Extremes", "sort", `{"items":[9223372036854775807,-9223372036854775808,0]}`,
			`{"items":[-9223372036854775808,0,9223372036854775807]}`, nil, ""},
		{"Unsorted", "sort", params, `{"items":[1,2,1,3]}`, checker.ErrRejected, "items[2] = 1 is out of asc order after items[1] = 2"},
		{"WrongOrder", "sort", `{"items":[3,1,2,1],"order":"desc"}`, `{"items":[1,1,2,3]}`, checker.ErrRejected, "out of desc order"},
		{"DuplicateSwapped", "sort", params, `{"items":[1,2,2,3]}`, checker.ErrRejected, "not a permutation"},
		{"ItemReplaced", "sort", params, `{"items":[1,1,2,4]}`, checker.ErrRejected, "not a permutation"},
		// 2^61 = 1 + p61, where p61 is the modulus of the fingerprint's field.
		{"ItemCongruentModP", "sort", `{"items":[0,1]}`, `{"items":[0,2305843009213693952]}`, checker.ErrRejected, "not a permutation"},
		// 2^32 swaps the item's high and low halves.
		{"HalvesSwapped", "sort", `{"items":[0,1]}`, `{"items":[0,4294967296]}`, checker.ErrRejected, "not a permutation"},
		{"TooShort", "sort", params, `{"items":[1,1,2]}`, checker.ErrRejected, "has 3 items; want 4"},
		{"TooLong", "sort", params, `{"items":[1,1,2,3,3]}`, checker.ErrRejected, "has 5 items; want 4"},
		{"Missing", "sort", params, `{}`, checker.ErrRejected, "items is missing"},
		{"Misnamed", "sort", params, `{"sorted":[1,1,2,3]}`, checker.ErrRejected, `unknown member "sorted"`},
		{"Null", "sort", params, `{"items":null}`, checker.ErrRejected, "items: want an array, got null"},
		{"Fractional", "sort", params, `{"items":[1,1,2,3.0]}`, checker.ErrRejected, "want a 64-bit integer"},
		{"OrderInvalid", "sort", `{"items":[1],"order":"up"}`, `{"items":[1]}`, checker.ErrInvalidParams, `order must be "asc" or "desc"`},
		{"ItemsMissing", "sort", `{"order":"asc"}`, `{"items":[]}`, checker.ErrInvalidParams, "items is missing"},
		{"ItemBeyondInt64", "sort", `{"items":[9223372036854775808]}`, `{"items":[0]}`, checker.ErrInvalidParams, "want a 64-bit integer"},
		{"TooManyItems", "sort", million, `{"items":[]}`, checker.ErrInvalidParams, "items: more than 1000000 elements"},
	})
}

func TestCheckMatmul(t *testing.T) {
	const params = `{"a":[[1,2],[3,4]],"b":[[5,6],[7,8]]}`
	runCheckCases(t, []checkCase{
		{"Correct", "matmul", params, `{"c":[[19,22],[43,50]]}`, nil, ""},
		{"Rectangular", "matmul", `{"a":[[1,2,3]],"b":[[4],[5],[6]]}`, `{"c":[[32]]}`, nil, ""},
		{"Outer", "matmul", `{"a":[[1],[2]],"b":[[3,4,5]]}`, `{"c":[[3,4,5],[6,8,10]]}`, nil, ""},
		{"ExtremeEntries", "matmul", `{"a":[[10000000,-10000000]],"b":[[10000000],[-10000000]]}`, `{"c":[[200000000000000]]}`, nil, ""},
		{"OneWrongEntry", "matmul", params, `{"c":[[19,22],[43,51]]}`, checker.ErrRejected, "c[1] differs from row 1 of a·b"},
		{"Transposed", "matmul", params, `{"c":[[19,43],[22,50]]}`, checker.ErrRejected, "differs from row 0"},
		{"BA", "matmul", params, `{"c":[[23,34],[31,46]]}`, checker.ErrRejected, "differs"},
		// 19 + p61 agrees with 19 modulo the fingerprint's field.
		{"EntryCongruentModP", "matmul", params, `{"c":[[2305843009213693970,22],[43,50]]}`, checker.ErrRejected, "c[0][0] is beyond"},
		{"TooFewRows", "matmul", params, `{"c":[[19,22]]}`, checker.ErrRejected, "c has 1 rows; want 2"},
		{"RaggedRow", "matmul", params, `{"c":[[19,22],[43,50,0]]}`, checker.ErrRejected, "c[1] has 3 entries; want 2"},
		{"NullRow", "matmul", params, `{"c":[[19,22],null]}`, checker.ErrRejected, "c[1]: want an array, got null"},
		{"EmptyRow", "matmul", params, `{"c":[[19,22],[]]}`, checker.ErrRejected, "c[1] has 0 entries; want 2"},
		{"Missing", "matmul", params, `{}`, checker.ErrRejected, "c is missing"},
		{"FractionalEntry", "matmul", params, `{"c":[[19,22],[43,50.5]]}`, checker.ErrRejected, "want a 64-bit integer"},
		{"DimensionMismatch", "matmul", `{"a":[[1,2]],"b":[[1,2]]}`, `{"c":[[1]]}`, checker.ErrInvalidParams, "b has 1 rows; want 2"},
		{"RaggedA", "matmul", `{"a":[[1,2],[3]],"b":[[1],[2]]}`, `{"c":[[1]]}`, checker.ErrInvalidParams, "a[1] has 1 entries; want 2"},
		{"EmptyA", "matmul", `{"a":[],"b":[[1]]}`, `{"c":[[1]]}`, checker.ErrInvalidParams, "a has 0 rows"},
		{"EmptyParamsRow", "matmul", `{"a":[[]],"b":[[1]]}`, `{"c":[[1]]}`, checker.ErrInvalidParams, "a has 0 columns"},
		{"MissingB", "matmul", `{"a":[[1]]}`, `{"c":[[1]]}`, checker.ErrInvalidParams, "b is missing"},
		{"EntryTooLarge", "matmul", `{"a":[[10000001]],"b":[[1]]}`, `{"c":[[10000001]]}`, checker.ErrInvalidParams, "a[0][0] is beyond ±10000000"},
		{"TooManyRows", "matmul", `{"a":[` + strings.Repeat("[1],", 512) + `[1]],"b":[[1]]}`, `{"c":[[1]]}`, checker.ErrInvalidParams, "a: more than 512 elements"},
		{"TooManyColumns", "matmul", `{"a":[[1]],"b":[[` + strings.Repeat("1,", 512) + `1]]}`, `{"c":[[1]]}`, checker.ErrInvalidParams, "b[0]: more than 512 elements"},
	})
}

// TestCheckReadsJSONStrictly covers the JSON the checkers accept: any
// valid spelling of an accepted document, but one reading of each, so that
// the checker and a JSON Schema validator agree on what a document says.
func TestCheckReadsJSONStrictly(t *testing.T) {
	const params = `{"items":[2,-1,0]}`
	runCheckCases(t, []checkCase{
		{"Whitespace", "sort", " {\n\t\"items\" : [ 2 ,\r\n-1, 0 ] , \"order\":\"asc\" }\n", "{\"items\":[-1,0,2]}  ", nil, ""},
		{"EscapedKey", "sort", params, `{"\u0069tems":[-1,0,2]}`, nil, ""},
		{"NegativeZero", "sort", params, `{"items":[-1,-0,2]}`, nil, ""},
		{"EscapedDigits", "factor", `{"n":"1\u0035"}`, `{"factors":["3","5"]}`, nil, ""},
		{"DuplicateKey", "sort", params, `{"items":[-1,0,2],"items":[-1,0,2]}`, checker.ErrRejected, `duplicate member "items"`},
		{"KeysAreCaseSensitive", "sort", params, `{"Items":[-1,0,2]}`, checker.ErrRejected, `unknown member "Items"`},
		{"Exponent", "sort", params, `{"items":[-1,0,2e0]}`, checker.ErrRejected, "items[2]: want a 64-bit integer, got a fraction or exponent"},
		{"FractionZero", "sort", params, `{"items":[-1,0,2.0]}`, checker.ErrRejected, "items[2]: want a 64-bit integer, got a fraction or exponent"},
		{"LeadingZero", "sort", params, `{"items":[-1,0,02]}`, checker.ErrRejected, "leading zero"},
		{"BareMinus", "sort", params, `{"items":[-1,0,-]}`, checker.ErrRejected, "want a digit after '-'"},
		{"PlusSign", "sort", params, `{"items":[-1,0,+2]}`, checker.ErrRejected, "invalid character '+'"},
		{"StringItem", "sort", params, `{"items":[-1,0,"2"]}`, checker.ErrRejected, "items[2]: want a 64-bit integer, got a string"},
		{"TrailingComma", "sort", params, `{"items":[-1,0,2,]}`, checker.ErrRejected, "malformed JSON at byte 17"},
		{"TrailingMemberComma", "sort", params, `{"items":[-1,0,2],}`, checker.ErrRejected, "want a member name"},
		{"MissingColon", "sort", params, `{"items" [-1,0,2]}`, checker.ErrRejected, "want ':'"},
		{"Unterminated", "sort", params, `{"items":[-1,0,2]`, checker.ErrRejected, "unexpected end of input"},
		{"UnterminatedString", "factor", `{"n":"15"}`, `{"factors":["3","5`, checker.ErrRejected, "unexpected end of input"},
		{"ControlCharacter", "factor", `{"n":"15"}`, "{\"factors\":[\"3\",\"5\t\"]}", checker.ErrRejected, "control character"},
		{"BadEscape", "factor", `{"n":"15"}`, `{"factors":["3","\x35"]}`, checker.ErrRejected, "invalid string"},
		{"NonASCIIDigits", "factor", `{"n":"15"}`, `{"factors":["3","５"]}`, checker.ErrRejected, "not a decimal string"},
		{"TopLevelArray", "sort", params, `[-1,0,2]`, checker.ErrRejected, "the value: want an object, got an array"},
		{"TopLevelNull", "sort", params, `null`, checker.ErrRejected, "the value: want an object, got null"},
		{"Empty", "sort", params, ``, checker.ErrRejected, "unexpected end of input"},
		{"TwoValues", "sort", params, `{"items":[-1,0,2]}{}`, checker.ErrRejected, "data after the value"},
		{"HugeKeyIsCut", "sort", params, `{"` + strings.Repeat("k", 100000) + `":1}`, checker.ErrRejected, `unknown member "kkkk`},
	})
}

// TestMatmulRejectsEveryCorruptedEntry corrupts one entry of a correct
// product in many ways; Freivalds' check must catch every one.
func TestMatmulRejectsEveryCorruptedEntry(t *testing.T) {
	c := MustGet(t, "matmul")
	params := MustGenerate(t, "matmul", 7, 16)
	output, _ := MustSolve(t, "matmul", params)
	var correct struct{ C [][]int64 }
	if err := json.Unmarshal(output, &correct); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	deltas := []int64{1, -1, 2, 1 << 20, -(1 << 40), 1 << 55}
	for trial := range 1000 {
		i, j := rng.IntN(len(correct.C)), rng.IntN(len(correct.C[0]))
		delta := deltas[trial%len(deltas)]
		if trial >= 2*len(deltas) {
			delta = rng.Int64N(1<<30) + 1
		}
		corrupt := make([][]int64, len(correct.C))
		for r := range corrupt {
			corrupt[r] = slices.Clone(correct.C[r])
		}
		corrupt[i][j] += delta
		out, err := json.Marshal(map[string]any{"c": corrupt})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Check(params, out)
		if !errors.Is(err, checker.ErrRejected) || !strings.Contains(err.Error(), fmt.Sprintf("c[%d] differs", i)) {
			t.Fatalf("corrupting c[%d][%d] by %d: Check = %v, want row %d rejected", i, j, delta, err, i)
		}
	}
}

// TestVerdictsAreDeterministic checks a correct and a corrupted output
// many times from concurrent goroutines: every call gives the same verdict,
// randomised fingerprints included.
func TestVerdictsAreDeterministic(t *testing.T) {
	sizes := map[string]int{"factor": 40, "pow": 8, "sort": 500, "matmul": 20}
	for _, name := range checker.Names() {
		t.Run(name, func(t *testing.T) {
			c := MustGet(t, name)
			params := MustGenerate(t, name, 3, sizes[name])
			good, _ := MustSolve(t, name, params)
			// Corrupt the last digit: the last factor, the nonce, the last
			// item or the last entry of the product.
			bad := slices.Clone(good)
			i := bytes.LastIndexFunc(bad, func(r rune) bool { return '0' <= r && r <= '9' })
			bad[i] = '0' + (bad[i]-'0'+1)%10
			for _, output := range []json.RawMessage{good, bad} {
				want := fmt.Sprint(c.Check(params, output))
				verdicts := make(chan string, 40)
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() {
						for range 5 {
							verdicts <- fmt.Sprint(c.Check(params, output))
						}
					})
				}
				wg.Wait()
				close(verdicts)
				for got := range verdicts {
					if got != want {
						t.Fatalf("verdict %q, then %q", want, got)
					}
				}
			}
			if err := c.Check(params, good); err != nil {
				t.Errorf("correct output: %v", err)
			}
			if err := c.Check(params, bad); !errors.Is(err, checker.ErrRejected) {
				t.Errorf("corrupted output: %v, want it rejected", err)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	sizes := map[string][]int{
		"factor": {1, 8, 16, 24, 32, 48, 56},
		"pow":    {0, 1, 4, 8, 12},
		"sort":   {0, 1, 2, 10, 1000, 20000},
		"matmul": {0, 1, 2, 7, 32, 64},
	}
	for _, name := range checker.Names() {
		c := MustGet(t, name)
		for _, size := range sizes[name] {
			for seed := range uint64(3) {
				t.Run(fmt.Sprintf("%s/size=%d/seed=%d", name, size, seed), func(t *testing.T) {
					params := MustGenerate(t, name, seed, size)
					if again := MustGenerate(t, name, seed, size); string(again) != string(params) {
						t.Fatal("Generate is not deterministic for one seed")
					}
					if err := c.CheckParams(params); err != nil {
						t.Fatalf("CheckParams(generated) = %v", err)
					}
					out, work := MustSolve(t, name, params)
					if err := c.Check(params, out); err != nil {
						t.Fatalf("Check(solved) = %v", err)
					}
					out2, work2 := MustSolve(t, name, params)
					if string(out2) != string(out) || work2 != work {
						t.Errorf("Solve is not deterministic: work %d then %d", work, work2)
					}
					if work < 0 {
						t.Errorf("work = %d", work)
					}
				})
			}
		}
	}
}

// TestGenerateHonoursSize checks what size means for each checker, and
// that sizes beyond a checker's range are clamped.
func TestGenerateHonoursSize(t *testing.T) {
	measure := map[string]func(json.RawMessage) int{
		"factor": func(p json.RawMessage) int {
			var v struct{ N string }
			json.Unmarshal(p, &v)
			n, _ := new(big.Int).SetString(v.N, 10)
			return n.BitLen()
		},
		"pow": func(p json.RawMessage) int {
			var v struct{ Difficulty int }
			json.Unmarshal(p, &v)
			return v.Difficulty
		},
		"sort": func(p json.RawMessage) int {
			var v struct{ Items []int64 }
			json.Unmarshal(p, &v)
			return len(v.Items)
		},
		"matmul": func(p json.RawMessage) int {
			var v struct{ A, B [][]int64 }
			json.Unmarshal(p, &v)
			if len(v.A) != len(v.B) || len(v.A[0]) != len(v.A) {
				t.Errorf("matmul: a is %d×%d, b has %d rows", len(v.A), len(v.A[0]), len(v.B))
			}
			return len(v.A)
		},
	}
	cases := []struct {
		name            string
		size, low, high int
	}{
		{"factor", 0, 7, 8},
		{"factor", 64, 63, 64},
		{"factor", 120, 119, 120},
		{"factor", 1000, 127, 128},
		{"pow", -5, 1, 1},
		{"pow", 20, 20, 20},
		{"pow", 99, 32, 32},
		{"sort", -1, 0, 0},
		{"sort", 500, 500, 500},
		{"matmul", 0, 1, 1},
		{"matmul", 17, 17, 17},
		{"matmul", 600, 512, 512},
	}
	for _, tc := range cases {
		for seed := range uint64(2) {
			got := measure[tc.name](MustGenerate(t, tc.name, seed, tc.size))
			if got < tc.low || got > tc.high {
				t.Errorf("%s size %d seed %d: measured %d, want %d to %d", tc.name, tc.size, seed, got, tc.low, tc.high)
			}
		}
	}
}
