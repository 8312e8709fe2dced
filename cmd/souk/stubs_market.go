package main

import "context"

// Placeholder until the market role lands cmd/souk/market.go (then this file is deleted).
func runMarket(ctx context.Context, a *App, args []string) int { return notYet(a, "market") }
func runDemo(ctx context.Context, a *App, args []string) int   { return notYet(a, "demo") }
