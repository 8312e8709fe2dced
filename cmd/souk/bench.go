package main

import "context"

// runBench is `souk bench`; the load generator is built on top of the
// merchant in a later step (see docs/merchant.md, "Benchmark").
func runBench(ctx context.Context, a *App, args []string) int { return notYet(a, "bench") }
