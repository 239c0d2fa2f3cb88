package checker

import (
	"encoding/json"
	"fmt"
	"math/bits"
)

// The checkers read params and outputs with jsonReader, a strict reader of
// the small part of JSON they accept (one object whose members are
// integers, strings and arrays of them), rather than with encoding/json,
// for two reasons. Decoding dominated the cost of a check: encoding/json
// spends over a hundred nanoseconds on each integer through reflection,
// which made checking a sorted list or a matrix product only 1.1 to 1.5
// times faster than recomputing it (BenchmarkCheckSort, BenchmarkCheckMatmul);
// this reader spends about twenty.
// And it is strict where encoding/json is lenient: keys match exactly and
// duplicate keys are refused, so the checker and a JSON Schema validator
// cannot read one document two ways.
//
// Its errors name the member at fault (such as "items[3]") and never quote
// more than a few bytes of the input, which may be megabytes long.

// jsonReader reads JSON from data, starting at pos.
type jsonReader struct {
	data []byte
	pos  int
}

// readObject reads data, at most limit bytes, as one JSON object, calling
// member for each member with the reader positioned at its value; member
// must read the value or return an error.
func readObject(data []byte, limit int, member func(r *jsonReader, key string) error) error {
	if len(data) > limit {
		return fmt.Errorf("%d bytes exceeds the limit of %d", len(data), limit)
	}
	r := &jsonReader{data: data}
	r.skipSpace()
	if err := r.expect('{', "the value", "an object"); err != nil {
		return err
	}
	var seen []string
	r.skipSpace()
	if !r.consume('}') {
		for {
			r.skipSpace()
			if r.peek() != '"' {
				return r.syntaxError("want a member name")
			}
			key, err := r.str("member name")
			if err != nil {
				return err
			}
			for _, s := range seen {
				if s == key {
					return fmt.Errorf("duplicate member %s", quoteShort(key))
				}
			}
			seen = append(seen, key)
			r.skipSpace()
			if !r.consume(':') {
				return r.syntaxError("want ':' after a member name")
			}
			r.skipSpace()
			if err := member(r, key); err != nil {
				return err
			}
			r.skipSpace()
			if r.consume(',') {
				continue
			}
			if r.consume('}') {
				break
			}
			return r.syntaxError("want ',' or '}' after a member")
		}
	}
	r.skipSpace()
	if r.pos != len(r.data) {
		return r.syntaxError("data after the value")
	}
	return nil
}

// unknownMember is the error for a member a checker does not define.
func unknownMember(key string) error {
	return fmt.Errorf("unknown member %s", quoteShort(key))
}

// quoteShort quotes s, cut to a length fit for an error message.
func quoteShort(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q…", s[:40])
	}
	return fmt.Sprintf("%q", s)
}

func (r *jsonReader) skipSpace() {
	for r.pos < len(r.data) {
		switch r.data[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

// peek returns the next byte, or 0 at the end of the input.
func (r *jsonReader) peek() byte {
	if r.pos < len(r.data) {
		return r.data[r.pos]
	}
	return 0
}

// consume advances past c if it is next.
func (r *jsonReader) consume(c byte) bool {
	if r.pos < len(r.data) && r.data[r.pos] == c {
		r.pos++
		return true
	}
	return false
}

func (r *jsonReader) syntaxError(msg string) error {
	if r.pos >= len(r.data) {
		return fmt.Errorf("malformed JSON: unexpected end of input")
	}
	return fmt.Errorf("malformed JSON at byte %d: %s", r.pos, msg)
}

// expect consumes c, which opens a value of the given type, or reports
// what the member holds instead.
func (r *jsonReader) expect(c byte, name, want string) error {
	if r.consume(c) {
		return nil
	}
	return r.typeError(name, want)
}

// typeError reports that the value at the reader is not of the wanted
// type, naming the type it is.
func (r *jsonReader) typeError(name, want string) error {
	var got string
	switch c := r.peek(); {
	case r.pos >= len(r.data):
		return r.syntaxError("")
	case c == '"':
		got = "a string"
	case c == '{':
		got = "an object"
	case c == '[':
		got = "an array"
	case c == 't' || c == 'f':
		got = "a boolean"
	case c == 'n':
		got = "null"
	case c == '-' || '0' <= c && c <= '9':
		got = "a number"
	default:
		return r.syntaxError(fmt.Sprintf("invalid character %q", c))
	}
	return fmt.Errorf("%s: want %s, got %s", name, want, got)
}

// str reads a string.
func (r *jsonReader) str(name string) (string, error) {
	if err := r.expect('"', name, "a string"); err != nil {
		return "", err
	}
	start, plain := r.pos-1, true
	for {
		if r.pos >= len(r.data) {
			return "", r.syntaxError("")
		}
		c := r.data[r.pos]
		switch {
		case c == '"':
			r.pos++
			if plain {
				return string(r.data[start+1 : r.pos-1]), nil
			}
			// Escapes and non-ASCII text are rare here; let encoding/json
			// apply the full grammar to them.
			var s string
			if err := json.Unmarshal(r.data[start:r.pos], &s); err != nil {
				r.pos = start
				return "", r.syntaxError("invalid string")
			}
			return s, nil
		case c == '\\':
			plain = false
			r.pos += 2
		case c < 0x20:
			return "", r.syntaxError("control character in a string")
		default:
			plain = plain && c < 0x80
			r.pos++
		}
	}
}

// where names a member, or its index'th element when index ≥ 0.
func where(name string, index int) string {
	if index < 0 {
		return name
	}
	return fmt.Sprintf("%s[%d]", name, index)
}

// integer reads a JSON number that must be an integer, returning its
// magnitude and sign. It refuses fractions and exponents, even 1.0 and
// 1e3: an integer has one spelling here. Name and index say where the
// number is, for error messages. It is the checkers' innermost loop, so it
// works on locals and tests for overflow with carries, not divisions.
func (r *jsonReader) integer(name string, index int, want string) (mag uint64, neg bool, err error) {
	data, pos := r.data, r.pos
	if pos < len(data) && data[pos] == '-' {
		neg = true
		pos++
	}
	start, overflow := pos, false
	for pos < len(data) {
		d := data[pos] - '0'
		if d > 9 {
			break
		}
		hi, lo := bits.Mul64(mag, 10)
		lo, carry := bits.Add64(lo, uint64(d), 0)
		overflow = overflow || hi != 0 || carry != 0
		mag = lo
		pos++
	}
	switch {
	case pos == start && neg:
		r.pos = pos
		return 0, false, r.syntaxError("want a digit after '-'")
	case pos == start:
		return 0, false, r.typeError(where(name, index), want)
	case pos-start > 1 && data[start] == '0':
		r.pos = start
		return 0, false, r.syntaxError("number with a leading zero")
	case pos < len(data) && (data[pos] == '.' || data[pos] == 'e' || data[pos] == 'E'):
		return 0, false, fmt.Errorf("%s: want %s, got a fraction or exponent", where(name, index), want)
	case overflow:
		return 0, false, fmt.Errorf("%s: want %s, got a number out of range", where(name, index), want)
	}
	r.pos = pos
	return mag, neg, nil
}

// int64 reads an integer that fits in an int64.
func (r *jsonReader) int64(name string, index int) (int64, error) {
	const want = "a 64-bit integer"
	mag, neg, err := r.integer(name, index, want)
	switch {
	case err != nil:
		return 0, err
	case neg && mag <= 1<<63:
		return int64(-mag), nil
	case !neg && mag < 1<<63:
		return int64(mag), nil
	}
	return 0, fmt.Errorf("%s: want %s, got a number out of range", where(name, index), want)
}

// uint64 reads a non-negative integer that fits in a uint64.
func (r *jsonReader) uint64(name string) (uint64, error) {
	const want = "a non-negative 64-bit integer"
	mag, neg, err := r.integer(name, -1, want)
	switch {
	case err != nil:
		return 0, err
	case neg && mag != 0:
		return 0, fmt.Errorf("%s: want %s, got a negative number", name, want)
	}
	return mag, nil
}

// array reads an array of at most limit elements, calling elem to read
// the i'th element.
func (r *jsonReader) array(name string, limit int, elem func(i int) error) error {
	if err := r.expect('[', name, "an array"); err != nil {
		return err
	}
	r.skipSpace()
	if r.consume(']') {
		return nil
	}
	for i := 0; ; i++ {
		if i == limit {
			return fmt.Errorf("%s: more than %d elements", name, limit)
		}
		r.skipSpace()
		if err := elem(i); err != nil {
			return err
		}
		r.skipSpace()
		if r.consume(',') {
			continue
		}
		if r.consume(']') {
			return nil
		}
		return r.syntaxError("want ',' or ']' after an array element")
	}
}

// ints reads an array of at most limit 64-bit integers. It returns an
// empty, non-nil slice for []. It is array specialised by hand, because
// it reads nearly every byte a sort or matmul check sees.
func (r *jsonReader) ints(name string, limit int) ([]int64, error) {
	if err := r.expect('[', name, "an array"); err != nil {
		return nil, err
	}
	xs := []int64{}
	r.skipSpace()
	if r.consume(']') {
		return xs, nil
	}
	for {
		if len(xs) == limit {
			return nil, fmt.Errorf("%s: more than %d elements", name, limit)
		}
		r.skipSpace()
		x, err := r.int64(name, len(xs))
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
		r.skipSpace()
		if r.consume(',') {
			continue
		}
		if r.consume(']') {
			return xs, nil
		}
		return nil, r.syntaxError("want ',' or ']' after an array element")
	}
}

// strs reads an array of at most limit strings.
func (r *jsonReader) strs(name string, limit int) ([]string, error) {
	ss := []string{}
	err := r.array(name, limit, func(i int) error {
		s, err := r.str(fmt.Sprintf("%s[%d]", name, i))
		ss = append(ss, s)
		return err
	})
	return ss, err
}

// matrix reads an array of at most limit arrays of at most limit 64-bit
// integers each. The rows may differ in length; the caller checks shapes.
func (r *jsonReader) matrix(name string, limit int) ([][]int64, error) {
	m := [][]int64{}
	err := r.array(name, limit, func(i int) error {
		row, err := r.ints(fmt.Sprintf("%s[%d]", name, i), limit)
		m = append(m, row)
		return err
	})
	return m, err
}
