package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/soukhq/souk/check"
	"github.com/soukhq/souk/clock"
)

// Defaults of the embedded Query Order endpoint's seller credentials. They
// guard a loopback test endpoint, not real data; override them when the
// endpoint is reachable by others.
const (
	checkDefaultMarketAK = "souk-check-ak"
	checkDefaultMarketSK = "souk-check-sk"
)

// runCheck is `souk check`: grade a merchant endpoint against the KooGallery
// contract. Exit status 0 only when every mandatory check passes; 1 when one
// fails; 2 on a usage or set-up error.
func runCheck(ctx context.Context, a *App, args []string) int {
	var (
		target, accessKey, keyFile, notifyKey, mode string
		upgrade, changeCheck, orderNotify           bool
		listen, marketAK, marketSK, upstream        string
		timeout, asyncTimeout, pollInterval         time.Duration
		concurrency                                 int
		only, junitPath, jsonPath, logLevel         string
		quiet, list                                 bool
	)
	s := a.NewSettings("check")
	s.String(&target, "target", "", "the merchant's production interface address (URL every basic interface is POSTed to)")
	s.Secret(&accessKey, "access-key", "the access key bound to the target's basic interfaces")
	s.String(&keyFile, "key-file", "", "read the access key from this file (mode 600) instead")
	s.Secret(&notifyKey, "notify-key", "the general key orderNotify is signed with (default: the access key)")
	s.String(&mode, "mode", check.ModePeriod, "the product's charging mode: PERIOD, ONE_TIME or ON_DEMAND")
	s.Bool(&upgrade, "upgrade", false, "the product offers upgradeInstance (PERIOD only)")
	s.Bool(&changeCheck, "change-check", false, "the product offers changeInstanceCheck (PERIOD only)")
	s.Bool(&orderNotify, "order-notify", false, "the product subscribes to orderNotify")
	s.String(&listen, "market-listen", "127.0.0.1:7480", "address of the embedded Query Order endpoint the target calls (\"off\" to disable)")
	s.String(&marketAK, "market-ak", checkDefaultMarketAK, "seller AK the target signs Query Order with")
	s.Secret(&marketSK, "market-sk", "seller SK the target signs Query Order with (default "+checkDefaultMarketSK+")")
	s.String(&upstream, "market", "", "a running souk market (or KooGallery) to forward Query Order to for orders check did not invent; signed with --market-ak/--market-sk")
	s.Duration(&timeout, "timeout", check.DefaultTimeout, "answer deadline (the contract's 5 s)")
	s.Duration(&asyncTimeout, "async-timeout", 2*time.Minute, "how long to poll queryInstance after a 000004 answer")
	s.Duration(&pollInterval, "poll-interval", 2*time.Second, "pause between queryInstance polls")
	s.Int(&concurrency, "concurrency", 8, "simultaneous newInstance retries in the concurrency check")
	s.String(&only, "only", "", "run only checks whose id starts with one of these comma-separated prefixes")
	s.String(&junitPath, "junit", "", "also write a JUnit XML report to this file")
	s.String(&jsonPath, "json", "", "also write a JSON report to this file")
	s.Bool(&quiet, "quiet", false, "no progress lines; only the details and the verdict")
	s.Bool(&list, "list", false, "list the checks and exit")
	s.String(&logLevel, "log-level", "warn", "log level of diagnostics on stderr")
	if err := s.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(a.Stderr, "souk check:", err)
		return 2
	}
	if list {
		printChecks(a)
		return 0
	}
	logger, err := a.Logger(logLevel, "text")
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk check:", err)
		return 2
	}
	if keyFile != "" {
		b, err := readSecretFile(keyFile)
		if err != nil {
			fmt.Fprintln(a.Stderr, "souk check: --key-file:", err)
			return 2
		}
		accessKey = strings.TrimSpace(string(b))
	}
	// SOUK_ACCESS_KEY may list several keys (the merchant's rotation syntax): sign with the first.
	accessKey, _, _ = strings.Cut(accessKey, ",")
	if target == "" || accessKey == "" {
		fmt.Fprintln(a.Stderr, "souk check: --target and an access key (SOUK_ACCESS_KEY, SOUK_ACCESS_KEY_FILE or --key-file) are required")
		s.FlagSet.Usage()
		return 2
	}
	if marketSK == "" {
		marketSK = checkDefaultMarketSK
	}
	cfg := check.Config{
		Target: target, AccessKey: accessKey, NotifyKey: notifyKey, Mode: strings.ToUpper(mode),
		Upgrade: upgrade, ChangeCheck: changeCheck, OrderNotify: orderNotify,
		Timeout: timeout, AsyncTimeout: asyncTimeout, PollInterval: pollInterval, Concurrency: concurrency,
		Clock: clock.Real{}, Logger: logger,
	}
	for _, p := range strings.Split(only, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.Only = append(cfg.Only, p)
		}
	}

	if listen != "off" && listen != "" {
		stub := check.NewMarketStub(marketAK, marketSK, clock.Real{}, logger)
		stub.Upstream, stub.UpstreamAK, stub.UpstreamSK = upstream, marketAK, marketSK
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			fmt.Fprintf(a.Stderr, "souk check: embedded Query Order endpoint: %v\n", err)
			return 2
		}
		srv := &http.Server{Handler: stub, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("embedded Query Order endpoint stopped", "err", err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		cfg.Orders = stub
		fmt.Fprintf(a.Stdout, "Query Order is served at http://%s%s\n", ln.Addr(), check.QueryOrderPath)
		sk := "(the --market-sk you set)"
		if marketSK == checkDefaultMarketSK {
			sk = marketSK
		}
		fmt.Fprintf(a.Stdout, "Configure the target with:\n  SOUK_MARKET_URL=http://%s\n  SOUK_MARKET_AK=%s\n  SOUK_MARKET_SK=%s\n", ln.Addr(), marketAK, sk)
		if upstream != "" {
			fmt.Fprintf(a.Stdout, "Orders check did not invent are forwarded to %s\n", upstream)
		}
		fmt.Fprintln(a.Stdout)
	} else {
		fmt.Fprintln(a.Stdout, "No Query Order endpoint (--market-listen off): a target that needs Query Order will fail")
	}

	features := []string{}
	for _, f := range []struct {
		on   bool
		name string
	}{{upgrade, check.FeatureUpgrade}, {changeCheck, check.FeatureChangeCheck}, {orderNotify, check.FeatureOrderNotify}} {
		if f.on {
			features = append(features, f.name)
		}
	}
	fmt.Fprintln(a.Stdout, check.Header(target, cfg.Mode, features))
	if !quiet {
		// A check that takes a while (asynchronous provisioning, slow
		// answers) says so, so the terminal does not look stuck.
		var (
			mu    sync.Mutex
			timer *time.Timer
			gen   int
		)
		cfg.Progress = func(r check.Result, done bool) {
			mu.Lock()
			defer mu.Unlock()
			gen++
			if timer != nil {
				timer.Stop()
				timer = nil
			}
			if done {
				fmt.Fprintf(a.Stdout, "  %s\n", check.ProgressLine(r))
				return
			}
			id, mine := r.ID, gen
			timer = time.AfterFunc(5*time.Second, func() {
				mu.Lock()
				defer mu.Unlock()
				if gen != mine {
					return // the check ended meanwhile
				}
				fmt.Fprintf(a.Stdout, "  ...    %s is still running (waiting for the target)\n", id)
			})
		}
	}
	rep := check.Run(ctx, cfg)
	if err := check.WriteText(a.Stdout, rep, false); err != nil {
		fmt.Fprintln(a.Stderr, "souk check:", err)
	}
	if rep.SetupError != "" {
		return 2
	}
	code := 0
	if !rep.Passed {
		code = 1
	}
	if junitPath != "" {
		if err := writeReportFile(junitPath, func(f *os.File) error { return check.WriteJUnit(f, rep) }); err != nil {
			fmt.Fprintln(a.Stderr, "souk check: --junit:", err)
			code = 2
		}
	}
	if jsonPath != "" {
		if err := writeReportFile(jsonPath, func(f *os.File) error { return check.WriteJSON(f, rep) }); err != nil {
			fmt.Fprintln(a.Stderr, "souk check: --json:", err)
			code = 2
		}
	}
	return code
}

func writeReportFile(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func printChecks(a *App) {
	family := ""
	for _, c := range check.Checks() {
		if c.Family != family {
			family = c.Family
			fmt.Fprintf(a.Stdout, "\n%s\n", family)
		}
		kind := "mandatory"
		if !c.Mandatory {
			kind = "warning  "
		}
		scope := ""
		if len(c.Modes) > 0 {
			scope += " [" + strings.Join(c.Modes, ",") + "]"
		}
		if c.Feature != "" {
			scope += " [--" + map[string]string{check.FeatureUpgrade: "upgrade", check.FeatureChangeCheck: "change-check", check.FeatureOrderNotify: "order-notify"}[c.Feature] + "]"
		}
		fmt.Fprintf(a.Stdout, "  %-44s %s %s%s\n      rule: %s\n", c.ID, kind, c.Title, scope, c.Ref)
	}
}
