// Package market is souk's self-hostable KooGallery (云商店): the catalog of
// sellers and products, buyers and their orders, the lifecycle engine that
// turns time into freeze/release calls, the dispatcher that signs and sends
// every production-interface call with KooGallery's retry policy and logs each
// attempt, and the open APIs merchants call (Query Order, usage push).
//
// Everything that depends on time reads the injected clock, and every timer
// and retry is a durable job (package jobs), so a virtual clock advanced by
// Advance drives a year of renewals, freezes and retries in seconds, and
// several replicas can share one PostgreSQL database.
package market

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/jobs"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Job kinds the market registers with the job runner.
const (
	JobDispatch = "market.dispatch" // one attempt of a production-interface message
	JobExpire   = "market.expire"   // a subscription reaches its expiry time
	JobRelease  = "market.release"  // the retention period after expiry is over
)

// DefaultRetention is how long an expired (frozen) instance is kept before
// releaseInstance (saas-v2.md §3: up to 15 days).
const DefaultRetention = 15 * 24 * time.Hour

// Config configures a Market.
type Config struct {
	DB     *db.DB
	Clock  clock.Clock  // drives the lifecycle, timers and retries (virtual in tests and demos)
	Logger *slog.Logger // nil → discard

	// WireClock stamps outgoing signatures (timestamp) and checks the
	// time window of incoming signed requests. It defaults to the real clock,
	// so that a merchant checking KooGallery's ±60 s window accepts the calls
	// of a market running on a virtual clock; set it to Clock when the merchant
	// runs on the same virtual clock.
	WireClock clock.Clock

	// HTTPClient sends production-interface calls. Its timeout is forced to
	// CallTimeout. nil → a fresh client.
	HTTPClient  *http.Client
	CallTimeout time.Duration // default 5 s (saas-v2.md §0)

	Retention time.Duration     // default DefaultRetention; a product may override it
	Policies  map[string]Policy // per activity; missing entries take DefaultPolicies()
	Rand      io.Reader         // ids, nonces; default crypto/rand

	// Workers is the number of concurrent job workers of Run (default 8).
	Workers int
	// Poll is the job runner's poll interval (default 200 ms).
	Poll time.Duration

	// ProductGate, when set, is asked before every new purchase (Buy) and
	// when listing the buyer catalog (Catalog): a product it refuses cannot
	// be bought and is hidden. The seller tools' CheckPurchasable (frozen and
	// off-sale products) is the gate of `souk market serve`. See SetProductGate.
	ProductGate ProductGate
}

// Market is one replica of the marketplace. Several replicas may share a
// PostgreSQL database.
type Market struct {
	db        *db.DB
	clock     clock.Clock
	wire      clock.Clock
	log       *slog.Logger
	client    *http.Client
	timeout   time.Duration
	retention time.Duration
	policies  map[string]Policy
	rand      io.Reader
	runner    *jobs.Runner
	gate      ProductGate
}

// New returns a Market. Call Migrate once before use.
func New(cfg Config) (*Market, error) {
	if cfg.DB == nil {
		return nil, errors.New("market: Config.DB is required")
	}
	if cfg.Clock == nil {
		return nil, errors.New("market: Config.Clock is required")
	}
	m := &Market{
		db:        cfg.DB,
		clock:     cfg.Clock,
		wire:      cfg.WireClock,
		log:       cfg.Logger,
		timeout:   cfg.CallTimeout,
		retention: cfg.Retention,
		rand:      cfg.Rand,
		gate:      cfg.ProductGate,
	}
	if m.wire == nil {
		m.wire = clock.Real{}
	}
	if m.log == nil {
		m.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if m.timeout <= 0 {
		m.timeout = 5 * time.Second
	}
	if m.retention <= 0 {
		m.retention = DefaultRetention
	}
	if m.rand == nil {
		m.rand = rand.Reader
	}
	m.policies = DefaultPolicies()
	for k, p := range cfg.Policies {
		m.policies[k] = p
	}
	c := http.Client{}
	if cfg.HTTPClient != nil {
		c = *cfg.HTTPClient
	}
	c.Timeout = m.timeout
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	m.client = &c
	workers := cfg.Workers
	if workers <= 0 {
		workers = 8
	}
	m.runner = &jobs.Runner{
		DB:     cfg.DB,
		Clock:  cfg.Clock,
		Logger: m.log,
		Handlers: map[string]jobs.Handler{
			JobDispatch: m.handleDispatch,
			JobExpire:   m.handleExpire,
			JobRelease:  m.handleRelease,
		},
		Workers: workers,
		Poll:    cfg.Poll,
	}
	return m, nil
}

// Migrations returns the market's embedded migration files.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// Migrate creates or upgrades the market's tables and the job queue.
func (m *Market) Migrate(ctx context.Context) error {
	if err := jobs.Migrate(ctx, m.db); err != nil {
		return fmt.Errorf("market: migrate jobs: %w", err)
	}
	if err := m.db.Migrate(ctx, "market", Migrations()); err != nil {
		return fmt.Errorf("market: migrate: %w", err)
	}
	return nil
}

// Run fails the synchronous calls a previous process left unfinished
// (RecoverInterruptedCalls), then works the job queue (dispatch attempts and
// lifecycle timers) until ctx is done.
func (m *Market) Run(ctx context.Context) error {
	if _, err := m.RecoverInterruptedCalls(ctx); err != nil {
		return err
	}
	return m.runner.Run(ctx)
}

// RunDue runs every job due at the clock's current time, until none is left.
func (m *Market) RunDue(ctx context.Context) (int, error) { return m.runner.RunDue(ctx) }

// Wake asks the job runner to poll now (after new work was committed).
func (m *Market) Wake() { m.runner.Wake() }

// Clock returns the clock that drives the market.
func (m *Market) Clock() clock.Clock { return m.clock }

// DB returns the market's database.
func (m *Market) DB() *db.DB { return m.db }
