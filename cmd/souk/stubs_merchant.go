package main

import "context"

// Placeholder until the merchant role lands cmd/souk/merchant.go (then this file is deleted).
func runMerchant(ctx context.Context, a *App, args []string) int { return notYet(a, "merchant") }
func runBench(ctx context.Context, a *App, args []string) int    { return notYet(a, "bench") }
