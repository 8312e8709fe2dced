// Command vendorapp is a small example of a vendor application behind souk
// merchant (package app holds the application; this file only wires it). It
// receives souk's signed webhooks, verifies them, and completes provisioning
// either synchronously (its answer carries appInfo) or, with -async, later
// through souk's management API.
//
//	go run ./examples/vendorapp -listen 127.0.0.1:9000 -secret whsec_… [-async -souk http://127.0.0.1:8080 -admin-token …] [-refuse-sku SKU=000106 …]
//
// -refuse-sku (repeatable) makes it refuse the creates of a SKU with a
// create-instance result code (000100–000107), which souk then answers to
// newInstance. Every setting can also come from the environment:
// VENDOR_LISTEN, VENDOR_WEBHOOK_SECRET, VENDOR_ASYNC, VENDOR_SOUK_URL,
// VENDOR_ADMIN_TOKEN, VENDOR_APP_URL, VENDOR_REFUSE_SKU (SKU=CODE,…). It deliberately does not import souk: the webhook contract
// is plain HTTP + HMAC-SHA256 (see docs/merchant.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/soukhq/souk/examples/vendorapp/app"
)

func main() {
	if err := run(os.Args[1:], os.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the usage is printed
		}
		fmt.Fprintln(os.Stderr, "vendorapp:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string) error {
	fs := flag.NewFlagSet("vendorapp", flag.ContinueOnError)
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	listen := fs.String("listen", env("VENDOR_LISTEN", "127.0.0.1:9000"), "listen address")
	var cfg app.Config
	fs.StringVar(&cfg.Secret, "secret", env("VENDOR_WEBHOOK_SECRET", ""), "webhook secret (souk's SOUK_WEBHOOK_SECRET)")
	fs.BoolVar(&cfg.Async, "async", env("VENDOR_ASYNC", "") == "1" || env("VENDOR_ASYNC", "") == "true", "complete provisioning later through souk's API")
	fs.StringVar(&cfg.SoukURL, "souk", env("VENDOR_SOUK_URL", "http://127.0.0.1:8080"), "souk merchant base URL (for -async)")
	fs.StringVar(&cfg.AdminToken, "admin-token", env("VENDOR_ADMIN_TOKEN", ""), "souk's admin token (for -async)")
	fs.StringVar(&cfg.AppURL, "app-url", env("VENDOR_APP_URL", "https://app.example.com"), "base of the generated frontEndUrl")
	cfg.Refuse = map[string]string{}
	refuse := func(v string) error {
		sku, code, ok := strings.Cut(v, "=")
		if !ok || sku == "" || len(code) != 6 || strings.Trim(code, "0123456789") != "" {
			return fmt.Errorf("%q is not SKU=CODE with a six-digit result code (000100–000107)", v)
		}
		cfg.Refuse[sku] = code
		return nil
	}
	fs.Func("refuse-sku", "refuse the creates of a SKU with a result code: SKU=CODE, e.g. basic=000106 (repeatable)", refuse)
	if v := env("VENDOR_REFUSE_SKU", ""); v != "" {
		for _, p := range strings.Split(v, ",") {
			if err := refuse(strings.TrimSpace(p)); err != nil {
				return fmt.Errorf("VENDOR_REFUSE_SKU: %w", err)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Secret == "" {
		return errors.New("-secret (VENDOR_WEBHOOK_SECRET) is required")
	}
	if cfg.Async && cfg.AdminToken == "" {
		return errors.New("-async needs -admin-token (VENDOR_ADMIN_TOKEN)")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	a := app.NewApp(cfg, log)
	srv := &http.Server{Addr: *listen, Handler: a, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("vendorapp listening", "addr", *listen, "webhook", "/webhook", "async", cfg.Async)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	a.Wait()
	return nil
}
