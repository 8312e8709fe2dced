package market

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/kg"
)

// fastMerchant answers every call 000000 with Body-Sign, at once.
func fastMerchant(tb testing.TB) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		b := []byte(`{"resultCode":"000000","resultMsg":"success","instanceId":"i"}`)
		w.Header().Set("Body-Sign", kg.BodySignHeader(testKey, b))
		_, _ = w.Write(b)
	}))
	tb.Cleanup(srv.Close)
	return srv, &n
}

// benchMarket is a migrated market with a seller, product and customer whose
// production address is url.
func benchMarket(tb testing.TB, backend string, clk clock.Clock, url string, workers int) *Market {
	ctx := context.Background()
	m, err := New(Config{DB: dbtest.Open(tb, backend), Clock: clk, WireClock: clk, Workers: workers, Poll: 50 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	_, err = m.CreateSeller(ctx, "s", "bench")
	must(err)
	_, err = m.SetAccessKey(ctx, "s", KeyBasic, testKey)
	must(err)
	a, err := m.AddAddress(ctx, "s", url)
	must(err)
	_, err = m.db.Exec(ctx, `UPDATE market_addresses SET verified = 1 WHERE id = $1`, a.ID)
	must(err)
	_, err = m.CreateProduct(ctx, ProductInput{ID: "p", SellerID: "s", Name: "bench", AddressID: a.ID,
		Plans: []Plan{{ProductCode: "P", SKUCode: "k", ChargingMode: ModePeriod, PeriodType: "year", PriceCents: 100}}})
	must(err)
	_, err = m.CreateCustomer(ctx, Customer{ID: "c", Name: "bench"})
	must(err)
	return m
}

// BenchmarkDispatch measures dispatcher throughput: b.N queued messages
// delivered to a fast merchant by one replica's job runner.
//
//	go test ./market -run '^$' -bench Dispatch -benchtime 5000x
func BenchmarkDispatch(b *testing.B) {
	for _, backend := range dbtest.Backends() {
		b.Run(backend, func(b *testing.B) {
			srv, calls := fastMerchant(b)
			m := benchMarket(b, backend, clock.Real{}, srv.URL, 16)
			ctx := context.Background()
			body := activityBody("updateInstanceStatus", false, "instanceId", "i", "status", "FREEZE")
			const batch = 500
			for done := 0; done < b.N; done += batch {
				err := m.db.Tx(ctx, func(tx *db.Tx) error {
					for i := done; i < min(done+batch, b.N); i++ {
						if _, err := m.enqueue(ctx, tx, m.clock.Now(), Outbound{SellerID: "s", Activity: "updateInstanceStatus", URL: srv.URL, Body: body}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			start := time.Now()
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); _ = m.Run(rctx) }()
			for calls.Load() < int64(b.N) {
				time.Sleep(5 * time.Millisecond)
			}
			for {
				var pending int
				if err := m.db.QueryRow(ctx, `SELECT COUNT(*) FROM market_messages WHERE state = 'pending'`).Scan(&pending); err != nil {
					b.Fatal(err)
				}
				if pending == 0 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			el := time.Since(start)
			b.StopTimer()
			cancel()
			<-done
			b.ReportMetric(float64(b.N)/el.Seconds(), "calls/s")
		})
	}
}

// seedSubscriptions inserts n active subscriptions whose expiries (and
// expiry timers) are spread evenly over a year from start, in bulk.
func seedSubscriptions(tb testing.TB, m *Market, n int, start time.Time) time.Duration {
	ctx := context.Background()
	spacing := 365 * 24 * time.Hour / time.Duration(n)
	const rows = 200
	for base := 0; base < n; base += 20 * rows {
		err := m.db.Tx(ctx, func(tx *db.Tx) error {
			for off := base; off < min(base+20*rows, n); off += rows {
				var subs, jobsSQL strings.Builder
				subs.WriteString(`INSERT INTO market_subscriptions (id, customer_id, seller_id, product_id, product_code, sku_code, charging_mode,
					period_type, status, instance_id, origin_order, expire_at, created_at, updated_at) VALUES `)
				jobsSQL.WriteString(`INSERT INTO jobs (kind, unique_key, payload, state, due_at, attempt, last_error, created_at, updated_at) VALUES `)
				for i := off; i < min(off+rows, n); i++ {
					if i > off {
						subs.WriteByte(',')
						jobsSQL.WriteByte(',')
					}
					id := "b" + strconv.Itoa(i)
					exp := start.Add(time.Duration(i+1) * spacing).UnixMilli()
					fmt.Fprintf(&subs, "('%s','c','s','p','P','k','PERIOD','year','ACTIVE','i%d','o%d',%d,%d,%d)", id, i, i, exp, start.UnixMilli(), start.UnixMilli())
					p, _ := json.Marshal(timerPayload{Sub: id, Expire: exp})
					fmt.Fprintf(&jobsSQL, "('%s','expire:%s:%d','%s','pending',%d,0,'',%d,%d)", JobExpire, id, exp, p, exp, start.UnixMilli(), start.UnixMilli())
				}
				if _, err := tx.Exec(ctx, subs.String()); err != nil {
					return err
				}
				js := jobsSQL.String()
				if m.db.Dialect == db.Postgres {
					js = strings.ReplaceAll(js, `,'{"s"`, `,convert_to('{"s"`)
					js = strings.ReplaceAll(js, `}','pending'`, `}','UTF8'),'pending'`)
				}
				if _, err := tx.Exec(ctx, js); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return spacing
}

// BenchmarkLifecycleStep measures one clock step of the lifecycle engine
// holding SOUK_BENCH_SUBS subscriptions (default 10000): each op advances the
// clock over exactly `due` expiries (freeze + its updateInstanceStatus call to
// a fast merchant). The time per op follows `due`, not the total.
//
//	SOUK_BENCH_SUBS=1000000 go test ./market -run '^$' -bench LifecycleStep -benchtime 20x -timeout 60m
func BenchmarkLifecycleStep(b *testing.B) {
	total := 10000
	if v := os.Getenv("SOUK_BENCH_SUBS"); v != "" {
		var err error
		if total, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	for _, backend := range dbtest.Backends() {
		b.Run(fmt.Sprintf("%s/subs=%d", backend, total), func(b *testing.B) {
			srv, calls := fastMerchant(b)
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			clk := clock.NewVirtual(start)
			m := benchMarket(b, backend, clk, srv.URL, 4)
			seedStart := time.Now()
			spacing := seedSubscriptions(b, m, total, start)
			b.Logf("seeded %d subscriptions in %s", total, time.Since(seedStart).Round(time.Millisecond))
			ctx := context.Background()
			for _, due := range []int{1, 10, 100} {
				b.Run(fmt.Sprintf("due=%d", due), func(b *testing.B) {
					before := calls.Load()
					b.ResetTimer()
					for range b.N {
						if _, err := m.Advance(ctx, time.Duration(due)*spacing); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					// Each expiry freezes now and releases 15 days later: both
					// are lifecycle events with a call to the merchant.
					got := calls.Load() - before
					if want := int64(due * b.N); got < want-int64(b.N) {
						b.Fatalf("%d calls for %d steps of %d due", got, b.N, due)
					}
					b.ReportMetric(float64(got)/float64(b.N), "calls/step")
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(got)/1e6, "ms/call")
				})
			}
		})
	}
}
