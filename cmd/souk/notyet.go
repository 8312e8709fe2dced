package main

import "fmt"

func notYet(a *App, name string) int {
	fmt.Fprintf(a.Stderr, "souk %s: not built into this binary yet\n", name)
	return 1
}
