// Command souk is the single binary of souk: the merchant server, the marketplace,
// the conformance checker and their tools. This package only wires things together:
// every behaviour lives in the domain packages.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// App is what every subcommand receives: its output streams and environment.
type App struct {
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

type command struct {
	summary string
	run     func(ctx context.Context, a *App, args []string) int
}

func commands() map[string]command {
	return map[string]command{
		"merchant": {"run the merchant server (the ISV side); `souk merchant help` for its tools", runMerchant},
		"market":   {"run the marketplace, or talk to a running one; `souk market help`", runMarket},
		"demo":     {"start a market, a merchant and the example vendor app on loopback and walk a purchase through its lifecycle", runDemo},
		"check":    {"grade a merchant endpoint against the KooGallery contract", runCheck},
		"bench":    {"load a merchant with signed requests and report throughput and latency", runBench},
		"version":  {"print the version", runVersion},
	}
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func runVersion(_ context.Context, a *App, _ []string) int {
	fmt.Fprintln(a.Stdout, "souk", version)
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "souk: the Huawei Cloud KooGallery commerce protocol, both ends.")
	fmt.Fprintln(w, "\nUsage: souk <command> [options]\n\nCommands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nEvery option can also be set with an environment variable SOUK_<OPTION>;")
	fmt.Fprintln(w, "secrets also accept SOUK_<OPTION>_FILE. See docs/commands.md.")
}

func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	case "-v", "--version":
		name = "version"
	}
	cmd, ok := commands()[name]
	if !ok {
		fmt.Fprintf(stderr, "souk: unknown command %q\n\n", strings.TrimSpace(name))
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cmd.run(ctx, &App{Stdout: stdout, Stderr: stderr, Getenv: getenv}, args[1:])
}
