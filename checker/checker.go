// Package checker owns agentmarket's built-in acceptance checkers: the
// deterministic tests behind the "checker" acceptance policy, under which
// escrow pays the seller when the delivered output passes. Each checker
// publishes JSON Schemas for the intent parameters it accepts and the output
// it expects, and verifies an output much more cheaply than it could be
// computed: factors by multiplying and primality tests, proof-of-work by one
// hash, sorting and matrix products by randomised fingerprints seeded from the
// inputs themselves, so that every verdict is reproducible.
//
// For the simulator the package also owns the tasks' generators and
// reference solvers, which report the work a solution took, so that sellers
// do real work and buyers verify it cheaply.
//
// It imports only the standard library.
package checker

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
)

// Checker verifies a delivered output against an intent's parameters. A
// Checker is stateless and safe for concurrent use, and its verdicts are
// deterministic: the same parameters and output always give the same result.
type Checker interface {
	// Name returns the checker's registry name, the value of an intent's
	// acceptance.checker field.
	Name() string

	// ParameterSchema returns a JSON Schema (draft 2020-12) for the intent
	// parameters the checker accepts. Some limits (such as matching matrix
	// dimensions) are beyond a schema; CheckParams enforces all of them.
	ParameterSchema() json.RawMessage

	// OutputSchema returns a JSON Schema (draft 2020-12) for the shape of a
	// delivery's output, so a seller knows what to send.
	OutputSchema() json.RawMessage

	// CheckParams reports whether params are valid for the checker, so the
	// market can refuse a malformed intent when it is posted rather than
	// when its delivery is checked. Its error wraps ErrInvalidParams.
	CheckParams(params json.RawMessage) error

	// Check returns nil when output is a correct answer for params. Otherwise
	// its error says briefly what is wrong, in words fit to show the agents,
	// and wraps ErrInvalidParams when the parameters are at fault or
	// ErrRejected when the output is. It never panics, whatever the bytes.
	Check(params, output json.RawMessage) error
}

var (
	// ErrInvalidParams is wrapped by every error that blames the parameters.
	ErrInvalidParams = errors.New("invalid parameters")
	// ErrRejected is wrapped by every error that blames the output.
	ErrRejected = errors.New("output rejected")
	// ErrUnknownChecker is returned by Generate and Solve for a name that is
	// not in the registry.
	ErrUnknownChecker = errors.New("unknown checker")
)

// task is what a built-in checker adds for the simulator.
type task interface {
	Checker
	// generate returns params for a task of roughly the given size.
	generate(rng *rand.Rand, size int) (json.RawMessage, error)
	// solve returns a correct output and the work units it took, or the
	// error CheckParams would give for invalid params.
	solve(params json.RawMessage) (json.RawMessage, int64, error)
}

// builtins is the fixed registry. It is never modified after
// initialisation, so it needs no lock and is no mutable global state.
var builtins = func() map[string]task {
	m := make(map[string]task)
	for _, t := range []task{factorChecker{}, powChecker{}, sortChecker{}, matmulChecker{}} {
		m[t.Name()] = t
	}
	return m
}()

// Get returns the built-in checker with the given name.
func Get(name string) (Checker, bool) {
	t, ok := builtins[name]
	return t, ok
}

// Names returns the names of all built-in checkers, sorted.
func Names() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Generate returns parameters for a task of the named checker of roughly the
// given size, drawing all randomness from rng, so the same generator state
// gives the same task. What size means depends on the checker, and values
// outside its range are clamped to the nearest bound:
//
//   - factor: the bit length of n, a product of two primes of size/2 bits
//     each (8 to 128);
//   - pow: the number of leading zero bits required (1 to 32);
//   - sort: the number of items (0 to 1,000,000);
//   - matmul: the dimension of two square matrices (1 to 512).
func Generate(name string, rng *rand.Rand, size int) (json.RawMessage, error) {
	t, ok := builtins[name]
	if !ok {
		return nil, fmt.Errorf("generate %q: %w", name, ErrUnknownChecker)
	}
	return t.generate(rng, size)
}

// Solve returns a correct output for the named checker's params and the
// units of work it took: Pollard rho iterations and trial divisions for
// factor, hashes for pow, n·⌈log2 n⌉ comparisons for sort, multiply-adds
// for matmul. It is deterministic: the same params always give the same
// output and work. The work needed for factor grows as 2^(bits/4) and for
// pow as 2^difficulty, so Solve may run for a long time on the largest
// tasks.
func Solve(name string, params json.RawMessage) (output json.RawMessage, work int64, err error) {
	t, ok := builtins[name]
	if !ok {
		return nil, 0, fmt.Errorf("solve %q: %w", name, ErrUnknownChecker)
	}
	output, work, err = t.solve(params)
	if err != nil {
		return nil, work, fmt.Errorf("solve %s: %w", name, err)
	}
	return output, work, nil
}

// invalid returns an error blaming the parameters.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidParams, fmt.Sprintf(format, args...))
}

// reject returns an error blaming the output.
func reject(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRejected, fmt.Sprintf(format, args...))
}

// readParams reads params as a JSON object, blaming the parameters for any
// fault.
func readParams(params []byte, limit int, member func(r *jsonReader, key string) error) error {
	if err := readObject(params, limit, member); err != nil {
		return invalid("%v", err)
	}
	return nil
}

// readOutput reads output as a JSON object, blaming the output for any
// fault.
func readOutput(output []byte, limit int, member func(r *jsonReader, key string) error) error {
	if err := readObject(output, limit, member); err != nil {
		return reject("%v", err)
	}
	return nil
}
