package merchant

import (
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/internal/lockedbuf"
)

// Housekeeping measures the PostgreSQL server's clock against the replica's
// and warns when they are more than ClockSkewWarn apart.
func TestClockCheck(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		t.Run(backend, func(t *testing.T) {
			logs := &lockedbuf.Buffer{}
			e := newEnv(t, backend, func(_ *Config, d *Deps) {
				d.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			})
			offset := func() float64 {
				t.Helper()
				mfs, err := e.m.Registry().Gather()
				if err != nil {
					t.Fatal(err)
				}
				for _, mf := range mfs {
					if mf.GetName() == "souk_merchant_database_clock_offset_seconds" {
						return mf.GetMetric()[0].GetGauge().GetValue()
					}
				}
				t.Fatal("no souk_merchant_database_clock_offset_seconds")
				return 0
			}
			// The virtual clock starts at the real time: both agree.
			e.clock.Set(time.Now())
			e.m.housekeep(e.ctx)
			if got := offset(); got < -1 || got > 1 {
				t.Errorf("offset %v s with agreeing clocks", got)
			}
			if strings.Contains(logs.String(), "clock is off") {
				t.Errorf("warned with agreeing clocks:\n%s", logs)
			}
			// This replica's clock runs an hour ahead.
			e.clock.Set(time.Now().Add(time.Hour))
			e.m.housekeep(e.ctx)
			got := offset()
			warned := strings.Contains(logs.String(), "clock is off the database server's")
			if backend == "sqlite" {
				if got != 0 || warned {
					t.Errorf("SQLite: offset %v, warned %v: want neither (one machine)", got, warned)
				}
				return
			}
			if got > -3599 || got < -3601 {
				t.Errorf("offset %v s, want about -3600", got)
			}
			// Logged to a tenth of a second; the virtual clock stands still
			// while the query runs, so the offset is an hour less a moment.
			if !warned || !regexp.MustCompile(`database_minus_local=-(1h0m0s|59m59\.\ds) `).MatchString(logs.String()) {
				t.Errorf("no warning naming the offset:\n%s", logs)
			}
		})
	}
}
