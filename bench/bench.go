// Package bench is `souk bench`: it loads a merchant's production address
// with signed KooGallery basic-interface calls over loopback HTTP (keep-alive
// connections, one per client) and measures throughput and latency of
// newInstance (distinct orders), duplicate newInstance storms and
// queryInstance, next to a floor measured in the same run: a minimal handler
// on the same HTTP stack that verifies the V2 signature and inserts one row
// per request in its own durable transaction. After the run it checks the
// store: one instance per order, one instance.created event per instance.
//
// By default the merchant runs in-process on a fresh database (SQLite file or
// a new PostgreSQL database), with an in-process fake market answering Query
// Order (APIG-verified) and an in-process Provisioner completing every
// instance at once. See docs/performance.md.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant"
)

// Config of a run. Zero values take the defaults noted.
type Config struct {
	// Target is the production address of a running merchant (e.g.
	// http://127.0.0.1:8080/koogallery). Empty: start one in-process.
	Target string
	// TargetDB is the DSN of the target's store, used to verify the run
	// (one instance per order). Optional with Target.
	TargetDB string
	// AccessKey signs the requests (and configures the in-process merchant).
	AccessKey string
	// DB is "sqlite" (default; files under Dir) or a PostgreSQL server DSN
	// (fresh databases are created there and dropped after the run).
	DB string
	// Dir holds SQLite files (default: a temporary directory, removed).
	Dir string
	// Clients are the concurrencies measured (default 1, 16, 64, 256).
	Clients []int
	// Duration of each measured cell (default 5 s) and of the warm-up before
	// it (default 500 ms, not measured).
	Duration, Warmup time.Duration
	// Scenarios to run, in this order (default floor, create, dup, query).
	Scenarios []string
	// StormSize is how many deliveries (distinct businessIds) each order gets
	// in the dup scenario (default 64).
	StormSize int
	// Merchant tunes the in-process merchant (AccessKeys and MarketURL/AK/SK
	// are set by the bench).
	Merchant merchant.Config
	Logger   *slog.Logger // nil → discard
	// Progress, if set, receives a line per finished cell.
	Progress io.Writer
}

func (c *Config) setDefaults() {
	if c.AccessKey == "" {
		c.AccessKey = "bench-access-key-0001"
	}
	if c.DB == "" {
		c.DB = "sqlite"
	}
	if len(c.Clients) == 0 {
		c.Clients = []int{1, 16, 64, 256}
	}
	if c.Duration <= 0 {
		c.Duration = 5 * time.Second
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	} else if c.Warmup == 0 {
		c.Warmup = 500 * time.Millisecond
	}
	if len(c.Scenarios) == 0 {
		c.Scenarios = []string{ScenarioFloor, ScenarioCreate, ScenarioDup, ScenarioQuery}
	}
	if c.StormSize <= 0 {
		c.StormSize = 64
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Verify is what the store holds after the run.
type Verify struct {
	Checked         bool `json:"checked"`
	Orders          int  `json:"orders"`          // distinct orders the bench sent newInstance for (measured cells)
	Instances       int  `json:"instances"`       // instances of those orders in the store
	DuplicateOrders int  `json:"duplicateOrders"` // orders with more than one instance
	CreatedEvents   int  `json:"createdEvents"`   // instance.created events of those instances
	Provisioned     int  `json:"provisioned"`     // Provisioner calls (in-process merchant)
}

// Report is the outcome of a run.
type Report struct {
	Backend  string   `json:"backend"`
	Target   string   `json:"target"`
	Machine  Machine  `json:"machine"`
	Results  []Result `json:"results"`
	Verify   Verify   `json:"verify"`
	Started  string   `json:"started"`
	Duration string   `json:"cellDuration"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs   int    `json:"cpus"`
	Model  string `json:"cpuModel"`
	GoOS   string `json:"goos"`
	GoArch string `json:"goarch"`
	Go     string `json:"go"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoOS: runtime.GOOS, GoArch: runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// OK reports whether the run had no error and no duplicate.
func (r *Report) OK() bool {
	for _, x := range r.Results {
		if x.Errors > 0 || x.Mismatch > 0 {
			return false
		}
	}
	return r.Verify.DuplicateOrders == 0 && (!r.Verify.Checked || r.Verify.Instances == r.Verify.Orders)
}

// Run performs the benchmark.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.setDefaults()
	log := cfg.Logger
	backend := "sqlite"
	if cfg.DB != "sqlite" {
		backend = "postgres"
	}
	rep := &Report{Backend: backend, Machine: machine(), Started: time.Now().UTC().Format(time.RFC3339), Duration: cfg.Duration.String()}
	if cfg.Target != "" {
		rep.Backend = "external"
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "souk-bench-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	open := func(name string) (*db.DB, error) {
		dsn, drop, err := freshDB(ctx, log, cfg.DB, dir, name)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, drop)
		d, err := db.Open(ctx, dsn)
		if err != nil {
			return nil, fmt.Errorf("bench: open %s: %w", db.Redact(dsn), err)
		}
		cleanups = append(cleanups, func() { _ = d.Close() })
		return d, nil
	}

	// The floor.
	var floorURL string
	if slices.Contains(cfg.Scenarios, ScenarioFloor) {
		fdb, err := open("floor")
		if err != nil {
			return nil, err
		}
		if _, err := fdb.ExecContext(ctx, floorSchema); err != nil {
			return nil, fmt.Errorf("bench: floor schema: %w", err)
		}
		s, err := startServer(&floorHandler{db: fdb, key: cfg.AccessKey}, log)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, s.Close)
		floorURL = s.URL() + "/koogallery"
	}

	// The create without a database.
	var noDBURL string
	if slices.Contains(cfg.Scenarios, ScenarioNoDB) {
		mk := &FakeMarket{}
		ms, err := startServer(mk, log)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, ms.Close)
		s, err := startServer(&noDBHandler{key: cfg.AccessKey, orders: &merchant.OrderClient{BaseURL: ms.URL(), AK: MarketAK, SK: MarketSK,
			Client: newHTTPClient(256), Clock: clock.Real{}}}, log)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, s.Close)
		noDBURL = s.URL() + "/koogallery"
	}

	// The merchant.
	base := cfg.Target
	var (
		store *db.DB
		prov  *provisioner
	)
	if base == "" {
		mdb, err := open("merchant")
		if err != nil {
			return nil, err
		}
		store = mdb
		if err := merchant.Migrate(ctx, mdb); err != nil {
			return nil, err
		}
		mk := &FakeMarket{}
		ms, err := startServer(mk, log)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, ms.Close)
		prov = &provisioner{}
		mc := cfg.Merchant
		mc.AccessKeys = []string{cfg.AccessKey}
		mc.MarketURL, mc.MarketAK, mc.MarketSK = ms.URL(), MarketAK, MarketSK
		m, err := merchant.New(mc, merchant.Deps{DB: mdb, Clock: clock.Real{}, Logger: log, Provisioner: prov,
			HTTPClient: newHTTPClient(256)})
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Run(rctx); err != nil {
				log.Error("bench: merchant background work", "err", err)
			}
		}()
		s, err := startServer(m.Handler(), log)
		if err != nil {
			cancel()
			return nil, err
		}
		cleanups = append(cleanups, func() { s.Close(); cancel(); wg.Wait(); _ = m.Close() })
		base = s.URL() + m.Config().BasePath
	} else if cfg.TargetDB != "" {
		d, err := db.Open(ctx, cfg.TargetDB)
		if err != nil {
			return nil, fmt.Errorf("bench: --target-db: %w", err)
		}
		cleanups = append(cleanups, func() { _ = d.Close() })
		store = d
	}
	rep.Target = base

	maxClients := slices.Max(cfg.Clients)
	hc := newHTTPClient(maxClients)
	run := randHex(4)
	var (
		created   []string // instanceIds answered by the create scenario
		createdMu sync.Mutex
	)
	newInstance := func(order, business string) []byte {
		b, _ := json.Marshal(map[string]string{"activity": kg.ActivityNewInstance, "orderId": order, "orderLineId": order + "-000001",
			"businessId": business, "testFlag": "0"})
		return b
	}
	okCreate := func(code string) bool { return code == kg.CodeSuccess || code == kg.CodeInProgress }
	okQuery := func(code string) bool { return code == kg.CodeSuccess }
	// Concurrency outer, scenario inner: the floor and the merchant at one
	// concurrency are measured close in time (the machine's other load
	// varies).
	for _, n := range cfg.Clients {
		for _, sc := range cfg.Scenarios {
			c := &client{base: base, key: cfg.AccessKey, http: hc}
			var spec cellSpec
			switch sc {
			case ScenarioFloor:
				c.base = floorURL
				spec = cellSpec{next: func(i int64) ([]byte, string) {
					return newInstance(fmt.Sprintf("FLOOR%s-%d-%d", run, n, i), randHex(8)), ""
				}, ok: okCreate}
			case ScenarioNoDB:
				c.base = noDBURL
				spec = cellSpec{next: func(i int64) ([]byte, string) {
					return newInstance(fmt.Sprintf("NODB%s-%d-%d", run, n, i), randHex(8)), ""
				}, ok: okCreate}
			case ScenarioCreate:
				prefix := fmt.Sprintf("BENCH%sC%d-", run, n)
				spec = cellSpec{next: func(i int64) ([]byte, string) {
					o := fmt.Sprintf("%s%d", prefix, i)
					return newInstance(o, "b"+randHex(8)), o
				}, ok: okCreate}
			case ScenarioDup:
				prefix := fmt.Sprintf("BENCH%sD%d-", run, n)
				storm := int64(cfg.StormSize)
				spec = cellSpec{next: func(i int64) ([]byte, string) {
					o := fmt.Sprintf("%s%d", prefix, i/storm)
					return newInstance(o, "b"+randHex(8)), o
				}, ok: okCreate}
			case ScenarioQuery:
				createdMu.Lock()
				ids := slices.Clone(created)
				createdMu.Unlock()
				if len(ids) == 0 {
					return nil, fmt.Errorf("bench: the query scenario needs the create scenario before it")
				}
				spec = cellSpec{next: func(i int64) ([]byte, string) {
					b, _ := json.Marshal(map[string]string{"activity": kg.ActivityQueryInstance, "instanceId": ids[int(i)%len(ids)], "testFlag": "0"})
					return b, ""
				}, ok: okQuery}
			default:
				return nil, fmt.Errorf("bench: unknown scenario %q", sc)
			}
			spec.clients = n
			if cfg.Warmup > 0 {
				// Same scenario on its own orders: connections open, caches
				// warm; not measured.
				w := spec
				w.d = cfg.Warmup
				inner := w.next
				w.next = func(i int64) ([]byte, string) {
					if sc == ScenarioQuery {
						return inner(i)
					}
					return newInstance(fmt.Sprintf("WARM%s-%s%d-%d", run, sc, n, i), "w"+randHex(8)), ""
				}
				runCell(ctx, c, w)
			}
			spec.d = cfg.Duration
			r := runCell(ctx, c, spec)
			r.Backend, r.Scenario = rep.Backend, sc
			if sc == ScenarioCreate && store != nil {
				ids, err := instancesOf(ctx, store, fmt.Sprintf("BENCH%sC%d-", run, n), 10000)
				if err != nil {
					return nil, err
				}
				createdMu.Lock()
				created = append(created, ids...)
				createdMu.Unlock()
			}
			rep.Results = append(rep.Results, r)
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "%-8s %-6s clients=%-3d %8.0f req/s p50=%s p99=%s max=%s errors=%d\n",
					rep.Backend, sc, n, r.Throughput, ms(r.P50), ms(r.P99), ms(r.Max), r.Errors)
			}
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
		}
	}
	if store != nil {
		// Let the background deliveries settle before counting events.
		time.Sleep(200 * time.Millisecond)
		v, err := verify(ctx, store, "BENCH"+run)
		if err != nil {
			return rep, err
		}
		if prov != nil {
			v.Provisioned = int(prov.calls.Load())
		}
		for _, r := range rep.Results {
			v.Orders += r.Orders
		}
		rep.Verify = v
	}
	return rep, nil
}

// instancesOf returns up to limit instanceIds of orders with prefix.
func instancesOf(ctx context.Context, d *db.DB, prefix string, limit int) ([]string, error) {
	rows, err := d.Query(ctx, `SELECT instance_id FROM merchant_instances WHERE order_id LIKE $1 ORDER BY instance_id LIMIT $2`, prefix+"%", limit)
	if err != nil {
		return nil, fmt.Errorf("bench: instances: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// verify counts what the store holds for the orders of this run.
func verify(ctx context.Context, d *db.DB, prefix string) (Verify, error) {
	v := Verify{Checked: true}
	like := prefix + "%"
	q := func(dst *int, query string) error {
		if err := d.QueryRow(ctx, query, like).Scan(dst); err != nil {
			return fmt.Errorf("bench: verify: %w", err)
		}
		return nil
	}
	if err := q(&v.Instances, `SELECT COUNT(*) FROM merchant_instances WHERE order_id LIKE $1`); err != nil {
		return v, err
	}
	if err := q(&v.DuplicateOrders, `SELECT COUNT(*) FROM (SELECT order_id FROM merchant_instances WHERE order_id LIKE $1
		GROUP BY order_id, order_line_id HAVING COUNT(*) > 1) x`); err != nil {
		return v, err
	}
	if err := q(&v.CreatedEvents, `SELECT COUNT(*) FROM handoff_events e JOIN merchant_instances i ON i.instance_id = e.subject
		WHERE e.type = 'instance.created' AND i.order_id LIKE $1`); err != nil {
		return v, err
	}
	return v, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
