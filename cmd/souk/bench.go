package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/soukhq/souk/bench"
	"github.com/soukhq/souk/db"
)

// runBench is `souk bench`: load a merchant with signed requests and report
// throughput and latency next to the floor (see docs/performance.md).
func runBench(ctx context.Context, a *App, args []string) int {
	s := a.NewSettings("bench")
	var (
		cfg                                             bench.Config
		clients, scenarios, jsonOut, cpuProfile, logLvl string
		pprofAddr                                       string
	)
	s.String(&cfg.Target, "target", "", "production address of a running merchant (e.g. http://127.0.0.1:8080/koogallery); empty: start one in-process")
	s.Secret(&cfg.TargetDB, "target-db", "DSN of the target's store, to verify one instance per order after the run")
	s.Secret(&cfg.AccessKey, "access-key", "access key signing the requests (and of the in-process merchant)")
	s.SecretShown(&cfg.DB, "db", "sqlite (default) or a PostgreSQL server DSN; fresh databases are created there and dropped after the run", db.Redact)
	s.String(&clients, "clients", "1,16,64,256", "concurrent clients, comma-separated")
	s.String(&scenarios, "scenarios", "floor,create,dup,query", "scenarios in order: floor, create, dup, query, nodb (a create without a database: the bound of any storage)")
	s.Duration(&cfg.Duration, "duration", 5*time.Second, "measured time of each cell")
	s.Duration(&cfg.Warmup, "warmup", 500*time.Millisecond, "unmeasured warm-up before each cell")
	s.Int(&cfg.StormSize, "storm", 64, "newInstance deliveries (distinct businessIds) per order in the dup scenario")
	s.Duration(&cfg.Merchant.Budget, "budget", 4*time.Second, "newInstance budget of the in-process merchant")
	s.String(&jsonOut, "json", "", "also write the report as JSON to this file")
	s.String(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (client, floor and in-process merchant) to this file")
	s.String(&logLvl, "log-level", "warn", "log level of the in-process servers")
	s.String(&pprofAddr, "pprof", "", "serve net/http/pprof on this address during the run (e.g. 127.0.0.1:6060)")
	if err := s.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(a.Stderr, "souk bench:", err)
		return 2
	}
	for c := range strings.SplitSeq(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fmt.Fprintf(a.Stderr, "souk bench: --clients: %q is not a positive number\n", c)
			return 2
		}
		cfg.Clients = append(cfg.Clients, n)
	}
	for sc := range strings.SplitSeq(scenarios, ",") {
		if sc = strings.TrimSpace(sc); sc != "" {
			cfg.Scenarios = append(cfg.Scenarios, sc)
		}
	}
	log, err := a.Logger(logLvl, "text")
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk bench:", err)
		return 2
	}
	cfg.Logger = log
	cfg.Progress = a.Stderr
	fmt.Fprintln(a.Stderr, "souk bench configuration:")
	s.Print(a.Stderr)
	if cfg.Warmup == 0 {
		cfg.Warmup = -1 // explicit zero: no warm-up (bench.Config's zero is the default); printed as given
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			fmt.Fprintln(a.Stderr, "souk bench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(a.Stderr, "souk bench:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if pprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
		srv := &http.Server{Addr: pprofAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.ListenAndServe() }()
		defer srv.Close()
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk bench:", err)
		return 1
	}
	rep.WriteMarkdown(a.Stdout)
	if jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(jsonOut, b, 0o644); err != nil {
			fmt.Fprintln(a.Stderr, "souk bench:", err)
			return 1
		}
	}
	if !rep.OK() {
		fmt.Fprintln(a.Stderr, "souk bench: errors or duplicates (see the report)")
		return 1
	}
	return 0
}
