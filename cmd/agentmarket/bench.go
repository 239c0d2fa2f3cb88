package main

import (
	"context"
	"fmt"
)

func runBench(ctx context.Context, e *env, args []string) error {
	return fmt.Errorf("bench: not yet")
}
