package checker_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/agentmarket/agentmarket/checker"
)

// A buyer's intent names a checker and its parameters; the market runs the
// checker on the seller's delivery and pays only if it passes.
func Example() {
	c, ok := checker.Get("matmul")
	if !ok {
		panic("matmul is not registered")
	}
	params := json.RawMessage(`{"a":[[1,2],[3,4]],"b":[[5,6],[7,8]]}`)

	fmt.Println(c.Check(params, json.RawMessage(`{"c":[[19,22],[43,50]]}`)))

	err := c.Check(params, json.RawMessage(`{"c":[[19,22],[43,51]]}`))
	fmt.Println(err)
	fmt.Println(errors.Is(err, checker.ErrRejected))
	// Output:
	// <nil>
	// output rejected: c[1] differs from row 1 of a·b
	// true
}

// The simulator generates a task, has a seller solve it, and a buyer check it.
func ExampleSolve() {
	rng := rand.New(rand.NewPCG(1, 2))
	params, err := checker.Generate("factor", rng, 40)
	if err != nil {
		panic(err)
	}
	output, work, err := checker.Solve("factor", params)
	if err != nil {
		panic(err)
	}
	c, _ := checker.Get("factor")
	fmt.Println(c.Check(params, output), work > 0)
	// Output: <nil> true
}
