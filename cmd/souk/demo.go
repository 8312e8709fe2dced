package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	vendorapp "github.com/soukhq/souk/examples/vendorapp/app"
	"github.com/soukhq/souk/market"
	"github.com/soukhq/souk/merchant"
)

func serveLoopback(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func demo(ctx context.Context, out io.Writer, log *slog.Logger, keep bool) error {
	dir, err := os.MkdirTemp("", "souk-demo-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(out, "databases in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now().UTC().Truncate(time.Second)
	clk := clock.NewVirtual(start)
	step := func(format string, args ...any) {
		fmt.Fprintf(out, "[%s] %s\n", clk.Now().Format("2006-01-02 15:04"), fmt.Sprintf(format, args...))
	}

	// The market.
	mdb, err := db.Open(ctx, filepath.Join(dir, "market.db"))
	if err != nil {
		return err
	}
	defer mdb.Close()
	m, err := market.New(market.Config{DB: mdb, Clock: clk, WireClock: clk, Logger: log.With("component", "market")})
	if err != nil {
		return err
	}
	if err := m.Migrate(ctx); err != nil {
		return err
	}
	const token = "demo-admin-token"
	marketURL, stopMarket, err := serveLoopback(m.Handler(token))
	if err != nil {
		return err
	}
	defer stopMarket()

	// The example vendor app (examples/vendorapp) on loopback: it verifies
	// the merchant's signed webhooks (on the demo's virtual clock) and
	// answers instance.created with the tenant's appInfo.
	const accessKey, ak, sk, webhookSecret = "demo-basic-access-key", "DEMOAK0000000001", "demo-secret-key-0001", "whsec_demo_webhook_secret"
	vendor := vendorapp.NewApp(vendorapp.Config{Secret: webhookSecret, AppURL: "https://app.example.com", Now: clk.Now},
		log.With("component", "vendorapp"))
	vendorURL, stopVendor, err := serveLoopback(vendor)
	if err != nil {
		return err
	}
	defer stopVendor()

	// The merchant, delivering its events to the vendor app.
	xdb, err := db.Open(ctx, filepath.Join(dir, "merchant.db"))
	if err != nil {
		return err
	}
	defer xdb.Close()
	if err := merchant.Migrate(ctx, xdb); err != nil {
		return err
	}
	mer, err := merchant.New(merchant.Config{AccessKeys: []string{accessKey}, MarketURL: marketURL, MarketAK: ak, MarketSK: sk,
		WebhookURL: vendorURL + "/webhook", WebhookSecret: webhookSecret},
		merchant.Deps{DB: xdb, Clock: clk, Logger: log.With("component", "merchant")})
	if err != nil {
		return err
	}
	merchantURL, stopMerchant, err := serveLoopback(mer.Handler())
	if err != nil {
		return err
	}
	defer stopMerchant()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); _ = mer.Run(ctx) }()
	prodAddr := merchantURL + mer.Config().BasePath
	step("market on %s, merchant on %s (production address %s), vendor app on %s, virtual clock", marketURL, merchantURL, prodAddr, vendorURL)

	// Catalog.
	seller, err := m.CreateSeller(ctx, "demo-isv", "Demo ISV")
	if err != nil {
		return err
	}
	if _, err := m.SetAccessKey(ctx, seller.ID, market.KeyBasic, accessKey); err != nil {
		return err
	}
	if _, err := m.CreateCredential(ctx, seller.ID, ak, sk); err != nil {
		return err
	}
	addr, err := m.AddAddress(ctx, seller.ID, prodAddr)
	if err != nil {
		return err
	}
	if addr, err = m.VerifyAddress(ctx, addr.ID); err != nil {
		return err
	}
	if !addr.Verified {
		return fmt.Errorf("production address not verified: %s", addr.VerifyNote)
	}
	step("seller %s: basic key bound, AK/SK issued, production address verified (%s)", seller.ID, addr.VerifyNote)
	prod, err := m.CreateProduct(ctx, market.ProductInput{ID: "demo-saas", SellerID: seller.ID, Name: "Demo SaaS", AddressID: addr.ID,
		RenewalChangeAllowed: true, UpgradeAllowed: true, TrialDays: 7, Plans: []market.Plan{
			{ProductCode: "OFFI-DEMO-MONTH", SKUCode: "standard", ChargingMode: market.ModePeriod, PeriodType: "month", PriceCents: 9900},
			{ProductCode: "OFFI-DEMO-YEAR", SKUCode: "standard", ChargingMode: market.ModePeriod, PeriodType: "year", PriceCents: 99000},
		}})
	if err != nil {
		return err
	}
	cust, err := m.CreateCustomer(ctx, market.Customer{ID: "demo-buyer", Name: "Demo Buyer", Email: "buyer@example.com"})
	if err != nil {
		return err
	}
	step("product %s (PERIOD month/year), buyer %s", prod.ID, cust.ID)

	// settle runs the market's due work until the merchant has caught up.
	settle := func() error {
		for range 200 {
			if _, err := m.RunDue(ctx); err != nil {
				return err
			}
			open, err := m.ListMessages(ctx, market.MessageFilter{State: "pending", Limit: 1})
			if err != nil {
				return err
			}
			if len(open) == 0 || open[0].NextTryAt.After(clk.Now()) {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	}
	report := func(sub string, since int64) (int64, error) {
		msgs, err := m.ListMessages(ctx, market.MessageFilter{SubscriptionID: sub, Limit: 1000})
		if err != nil {
			return since, err
		}
		last := since
		for i := len(msgs) - 1; i >= 0; i-- {
			x := msgs[i]
			if x.ID <= since || x.State == "queued" || x.State == "pending" {
				continue
			}
			body := string(x.Body)
			if len(body) > 150 {
				body = body[:150] + "…"
			}
			fmt.Fprintf(out, "        → %-20s %s  ⇒ %s %s\n", x.Activity, body, x.LastCode, x.State)
			last = x.ID
		}
		return last, nil
	}

	o, err := m.Buy(ctx, market.BuyInput{CustomerID: cust.ID, ProductCode: "OFFI-DEMO-MONTH", PeriodNumber: 1})
	if err != nil {
		return err
	}
	step("buyer pays order %s (NEW, 1 month, %s CNY)", o.OrderID, market.Yuan(o.AmountCents))
	if err := settle(); err != nil {
		return err
	}
	var seen int64
	if seen, err = report(o.SubscriptionID, seen); err != nil {
		return err
	}
	sub, err := m.GetSubscription(ctx, o.SubscriptionID)
	if err != nil {
		return err
	}
	step("subscription %s is %s, instance %s, expires %s", sub.ID, sub.Status, sub.InstanceID, sub.ExpireAt.Format("2006-01-02 15:04"))
	res, err := m.Resource(ctx, sub.ID)
	if err != nil {
		return err
	}
	if res.Instance != nil && res.Instance.AppInfo != nil {
		step("purchased resources (live queryInstance): %s user %s password %s", res.Instance.AppInfo.FrontEndURL, res.Instance.AppInfo.UserName,
			strings.Repeat("•", len(res.Instance.AppInfo.Password)))
	} else {
		step("purchased resources: %s", res.Error)
	}
	if seen, err = report(sub.ID, seen); err != nil {
		return err
	}

	advance := func(d time.Duration, what string) error {
		r, err := m.Advance(ctx, d)
		if err != nil {
			return err
		}
		if err := settle(); err != nil {
			return err
		}
		step("clock advanced %s (%d timer/retry runs): %s", d, r.Runs, what)
		seen, err = report(sub.ID, seen)
		return err
	}
	if err := advance(sub.ExpireAt.Sub(clk.Now()), "the month is over"); err != nil {
		return err
	}
	if sub, err = m.GetSubscription(ctx, sub.ID); err != nil {
		return err
	}
	step("subscription is %s; release due %s unless renewed", sub.Status, sub.ReleaseAt.Format("2006-01-02 15:04"))
	if err := advance(3*24*time.Hour, "three days into the retention period"); err != nil {
		return err
	}
	ro, err := m.Renew(ctx, market.RenewInput{SubscriptionID: sub.ID, PeriodNumber: 1, ProductCode: "OFFI-DEMO-YEAR"})
	if err != nil {
		return err
	}
	step("buyer renews for a year: order %s (RENEW, %s CNY)", ro.OrderID, market.Yuan(ro.AmountCents))
	if err := settle(); err != nil {
		return err
	}
	if seen, err = report(sub.ID, seen); err != nil {
		return err
	}
	if sub, err = m.GetSubscription(ctx, sub.ID); err != nil {
		return err
	}
	step("subscription is %s, expires %s", sub.Status, sub.ExpireAt.Format("2006-01-02 15:04"))
	if err := advance(sub.ExpireAt.Sub(clk.Now()), "the year is over"); err != nil {
		return err
	}
	if err := advance(market.DefaultRetention, "15 days of retention, not renewed"); err != nil {
		return err
	}
	if sub, err = m.GetSubscription(ctx, sub.ID); err != nil {
		return err
	}
	bill, err := m.GetBill(ctx, cust.ID)
	if err != nil {
		return err
	}
	// The merchant delivers instance.released to the vendor app in the background.
	for deadline := time.Now().Add(5 * time.Second); vendor.Tenant(sub.InstanceID) != "released" && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	step("subscription is %s; the buyer paid %s CNY; the vendor app's tenant is %s", sub.Status,
		market.Yuan(bill.TotalMicros/10000), vendor.Tenant(sub.InstanceID))
	if sub.Status != market.SubReleased {
		return fmt.Errorf("the walk-through ended with the subscription %s, not RELEASED", sub.Status)
	}
	return nil
}
