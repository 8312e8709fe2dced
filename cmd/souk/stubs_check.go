package main

import "context"

// Placeholder until the check role lands cmd/souk/check.go (then this file is deleted).
func runCheck(ctx context.Context, a *App, args []string) int { return notYet(a, "check") }
