package checker

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math/bits"
	"math/rand/v2"
)

const (
	maxPowDifficulty  = 32
	maxPowPrefixBytes = 64
	// powLimitBytes bounds the raw params and output.
	powLimitBytes = 1 << 10
)

// powChecker checks a proof-of-work nonce with a single hash.
//
// Params: {"prefix": "<hex>", "difficulty": <1..32>}.
// Output: {"nonce": <uint64>}, such that sha256(prefix bytes || the nonce as
// 8 big-endian bytes) begins with at least difficulty zero bits.
type powChecker struct{}

type powParams struct {
	Prefix     string `json:"prefix"`
	Difficulty int    `json:"difficulty"`
}

type powOutput struct {
	// Nonce is a pointer so that a missing nonce is told apart from zero.
	Nonce *uint64 `json:"nonce"`
}

func (powChecker) Name() string { return "pow" }

func (powChecker) ParameterSchema() json.RawMessage {
	return json.RawMessage(`{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "pow parameters",
  "description": "Find a nonce such that sha256(prefix bytes || nonce as 8 big-endian bytes) begins with at least difficulty zero bits.",
  "type": "object",
  "properties": {
    "prefix": {"type": "string", "pattern": "^([0-9a-fA-F]{2}){1,64}$"},
    "difficulty": {"type": "integer", "minimum": 1, "maximum": 32}
  },
  "required": ["prefix", "difficulty"],
  "additionalProperties": false
}`)
}

func (powChecker) OutputSchema() json.RawMessage {
	return json.RawMessage(`{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "pow output",
  "type": "object",
  "properties": {
    "nonce": {"type": "integer", "minimum": 0, "maximum": 18446744073709551615}
  },
  "required": ["nonce"],
  "additionalProperties": false
}`)
}

func (powChecker) CheckParams(params json.RawMessage) error {
	_, _, err := parsePowParams(params)
	return err
}

func parsePowParams(params []byte) (prefix []byte, difficulty int, err error) {
	var hexPrefix string
	var d int64
	err = readParams(params, powLimitBytes, func(r *jsonReader, key string) (err error) {
		switch key {
		case "prefix":
			hexPrefix, err = r.str("prefix")
		case "difficulty":
			d, err = r.int64("difficulty", -1)
		default:
			err = unknownMember(key)
		}
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	if hexPrefix == "" || len(hexPrefix) > 2*maxPowPrefixBytes {
		return nil, 0, invalid("prefix must be 1 to %d bytes in hex", maxPowPrefixBytes)
	}
	prefix, err = hex.DecodeString(hexPrefix)
	if err != nil {
		return nil, 0, invalid("prefix is not hex: %v", err)
	}
	if d < 1 || d > maxPowDifficulty {
		return nil, 0, invalid("difficulty must be 1 to %d bits", maxPowDifficulty)
	}
	return prefix, int(d), nil
}

// powZeroBits returns the number of leading zero bits of
// sha256(prefix || nonce), counting at most 64.
func powZeroBits(msg []byte, nonce uint64) int {
	binary.BigEndian.PutUint64(msg[len(msg)-8:], nonce)
	h := sha256.Sum256(msg)
	return bits.LeadingZeros64(binary.BigEndian.Uint64(h[:8]))
}

func (powChecker) Check(params, output json.RawMessage) error {
	prefix, difficulty, err := parsePowParams(params)
	if err != nil {
		return err
	}
	var out powOutput
	err = readOutput(output, powLimitBytes, func(r *jsonReader, key string) error {
		if key != "nonce" {
			return unknownMember(key)
		}
		nonce, err := r.uint64("nonce")
		out.Nonce = &nonce
		return err
	})
	if err != nil {
		return err
	}
	if out.Nonce == nil {
		return reject("nonce is missing")
	}
	msg := append(prefix, make([]byte, 8)...)
	if z := powZeroBits(msg, *out.Nonce); z < difficulty {
		return reject("sha256(prefix || nonce) has %d leading zero bits; want at least %d", z, difficulty)
	}
	return nil
}

func (powChecker) generate(rng *rand.Rand, size int) (json.RawMessage, error) {
	prefix := make([]byte, 16)
	for i := range prefix {
		prefix[i] = byte(rng.Uint32())
	}
	return json.Marshal(powParams{
		Prefix:     hex.EncodeToString(prefix),
		Difficulty: min(max(size, 1), maxPowDifficulty),
	})
}

// solve tries nonces from zero up; the work is the number of hashes.
func (powChecker) solve(params json.RawMessage) (json.RawMessage, int64, error) {
	prefix, difficulty, err := parsePowParams(params)
	if err != nil {
		return nil, 0, err
	}
	msg := append(prefix, make([]byte, 8)...)
	nonce := uint64(0)
	for powZeroBits(msg, nonce) < difficulty {
		nonce++
	}
	out, err := json.Marshal(powOutput{Nonce: &nonce})
	return out, int64(nonce) + 1, err
}
