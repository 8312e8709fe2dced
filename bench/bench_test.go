package bench_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/bench"
	"github.com/soukhq/souk/db/dbtest"
)

// A short run of every scenario on both backends: no error, no duplicate,
// one created event per instance, and a report naming every cell.
func TestRun(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			cfg := bench.Config{Clients: []int{1, 8}, Duration: 300 * time.Millisecond, Warmup: -1, StormSize: 8, Dir: t.TempDir(),
				Scenarios: []string{bench.ScenarioFloor, bench.ScenarioNoDB, bench.ScenarioCreate, bench.ScenarioDup, bench.ScenarioQuery}}
			if b == "postgres" {
				server := os.Getenv(dbtest.EnvPG)
				if server == "" || server == "skip" {
					dbtest.DSN(t, b) // fails or skips with dbtest's message
				}
				cfg.DB = server
			}
			rep, err := bench.Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				var buf bytes.Buffer
				rep.WriteMarkdown(&buf)
				t.Fatalf("run not OK:\n%s", buf.String())
			}
			if len(rep.Results) != 10 {
				t.Fatalf("%d cells, want 10 (5 scenarios × 2 concurrencies)", len(rep.Results))
			}
			for _, r := range rep.Results {
				if r.Requests == 0 || r.Throughput <= 0 || r.P50 <= 0 || r.P99 < r.P50 || r.Max < r.P99 {
					t.Fatalf("implausible cell %+v", r)
				}
			}
			v := rep.Verify
			if !v.Checked || v.Orders == 0 || v.Instances != v.Orders || v.DuplicateOrders != 0 || v.CreatedEvents != v.Instances {
				t.Fatalf("store after the run: %+v", v)
			}
			var buf bytes.Buffer
			rep.WriteMarkdown(&buf)
			for _, s := range []string{"| floor | 8 |", "| nodb | 8 |", "| create | 8 |", "| dup | 8 |", "| query | 8 |", "0 orders with more than one instance"} {
				if !strings.Contains(buf.String(), s) {
					t.Fatalf("report lacks %q:\n%s", s, buf.String())
				}
			}
		})
	}
}
