package check_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/soukhq/souk/check"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/internal/lockedbuf"
	"github.com/soukhq/souk/merchant"
	"github.com/soukhq/souk/merchant/handoff"
)

// TestSoukMerchantPasses runs the whole suite against the real souk merchant
// (merchant.New over httptest, on SQLite), with the embedded Query Order
// stub as its marketplace and an in-process vendor app that completes every
// instance.
func TestSoukMerchantPasses(t *testing.T) {
	cases := []struct {
		name    string
		encrypt string
		cc      check.Config
		budget  time.Duration // merchant's newInstance budget (0: default)
		delay   time.Duration // vendor app's provisioning time
	}{
		// orderNotify with its own general key: answer.bodySign and
		// sec.signature.keyKind tell the two keys apart.
		{"period with every optional interface", "", check.Config{Upgrade: true, ChangeCheck: true, OrderNotify: true, NotifyKey: "general-key-1"}, 0, 0},
		{"one-time, AES-256 credentials", "1", check.Config{Mode: check.ModeOneTime}, 0, 0},
		{"pay-per-use", "", check.Config{Mode: check.ModeOnDemand}, 0, 0},
		// The vendor app is slower than the merchant's budget: newInstance
		// answers 000004 and the suite polls queryInstance.
		{"asynchronous provisioning, AES-128", "2", check.Config{Upgrade: true, Only: []string{"iface.newInstance", "iface.queryInstance", "iface.upgradeInstance", "idem.newInstance", "async.", "lifecycle.", "sec.nonce"}}, 400 * time.Millisecond, 700 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			stub := check.NewMarketStub("check-market-ak", "check-market-sk", nil, nil)
			market := httptest.NewServer(stub)
			defer market.Close()

			logs := &lockedbuf.Buffer{}
			defer func() {
				if t.Failed() {
					t.Logf("merchant errors:\n%s", logs.String())
				}
			}()
			d := dbtest.Open(t, "sqlite")
			if err := merchant.Migrate(ctx, d); err != nil {
				t.Fatalf("merchant.Migrate: %v", err)
			}
			vendor := merchant.ProvisionerFunc(func(ctx context.Context, ev *handoff.Stored) (*merchant.Answer, error) {
				if c.delay > 0 {
					select {
					case <-time.After(c.delay):
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				}
				return &merchant.Answer{
					AppInfo: &merchant.AppInfo{
						FrontEndURL: "https://app.example.com/" + ev.Subject,
						AdminURL:    "https://app.example.com/admin",
						UserName:    "admin",
						Password:    "Init-Passw0rd",
						Memo:        "欢迎使用 (welcome)",
					},
					UsageInfo: []merchant.UsageInfo{{UsageValue: "1.5", StatisticalTime: time.Now().UTC().Format("20060102150405") + "000"}},
				}, nil
			})
			m, err := merchant.New(merchant.Config{
				AccessKeys:  []string{testKey},
				GeneralKeys: merchant.SplitKeys(c.cc.NotifyKey),
				MarketURL:   market.URL, MarketAK: "check-market-ak", MarketSK: "check-market-sk",
				EncryptType: c.encrypt,
				Budget:      c.budget,
			}, merchant.Deps{DB: d, Provisioner: vendor, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelError}))})
			if err != nil {
				t.Fatalf("merchant.New: %v", err)
			}
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- m.Run(runCtx) }()
			defer func() {
				stop()
				if err := <-done; err != nil {
					t.Errorf("merchant.Run: %v", err)
				}
			}()
			srv := httptest.NewServer(m.Handler())
			defer srv.Close()

			cc := c.cc
			cc.Target = srv.URL + m.Config().BasePath
			cc.AccessKey = testKey
			cc.Orders = stub
			cc.PollInterval = 100 * time.Millisecond
			cc.AsyncTimeout = 30 * time.Second
			rep := check.Run(ctx, cc)
			if rep.SetupError != "" {
				t.Fatalf("setup: %s", rep.SetupError)
			}
			if !rep.Passed {
				t.Fatalf("the souk merchant failed the suite:\n%s", describe(rep))
			}
			if c.cc.NotifyKey != "" {
				if r, _ := rep.Result("sec.signature.keyKind"); r.Status != check.Pass {
					t.Errorf("sec.signature.keyKind: %s (%s), want PASS with a general key of its own", r.Status, r.Message)
				}
			}
			if c.delay > 0 {
				if r, _ := rep.Result("async.newInstance"); r.Status != check.Pass {
					t.Errorf("async.newInstance: %s (%s), want PASS after a 000004", r.Status, r.Message)
				}
			}
			if w := describe(rep); w != "" {
				t.Logf("warnings:\n%s", w)
			}
			t.Logf("%d checks, %d calls, p95 %v", len(rep.Results), rep.Latency.Calls, rep.Latency.P95)
		})
	}
}
