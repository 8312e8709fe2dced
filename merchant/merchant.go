// Package merchant is souk's ISV server: the KooGallery SaaS V2 basic
// interfaces at one production address, the hand-off of every state change to
// the vendor's application, the management API through which the application
// completes provisioning, and the Query Order / usage push clients.
//
// Layering: HTTP handlers (kghttp.go, api.go) → service methods (service.go,
// lifecycle.go) → SQL in transactions, with every event emitted through
// merchant/handoff in the transaction of its change.
package merchant

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/merchant/handoff"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Job kinds of the merchant.
const (
	JobOrder     = "merchant.order"      // fetch an order (create, upgrade, notify) and hand off
	JobUsagePush = "merchant.usage_push" // push pending usage records
)

// Deps are the merchant's collaborators.
type Deps struct {
	DB          *db.DB
	Clock       clock.Clock          // nil → clock.Real{}
	Logger      *slog.Logger         // nil → discard
	HTTPClient  *http.Client         // outbound calls (Query Order, usage push, webhooks); nil → 10 s timeout client
	Provisioner Provisioner          // optional: in-process vendor app instead of the webhook
	Rand        io.Reader            // credential IVs; nil → crypto/rand
	Registry    *prometheus.Registry // nil → a new registry (see Registry())
}

// Merchant is a configured merchant server.
type Merchant struct {
	cfg        Config
	db         *db.DB
	clock      clock.Clock
	log        *slog.Logger
	prov       Provisioner
	rand       io.Reader
	orders     *OrderClient
	usage      *UsageClient
	deliver    *handoff.Deliverer
	group      *db.Group                  // group commit of the request path's writes (group.go)
	lookups    *db.Batcher[*lookupItem]   // batched known-line checks of creates (batch.go)
	creates    *db.Batcher[*createItem]   // batched creates (batch.go)
	audits     *db.Batcher[*auditItem]    // batched audit records (batch.go)
	deliveries *db.Batcher[*deliveryItem] // batched records of inline deliveries (batch.go)
	runner     *jobs.Runner
	registry   *prometheus.Registry
	metrics    *metrics
	// clockOffset is the database server's clock minus this process's, in
	// nanoseconds, as checkClock last measured it.
	clockOffset atomic.Int64
	all         *http.ServeMux // every route (Handler)
	public      *http.ServeMux // the public side (PublicHandler)
	admin       *http.ServeMux // the admin side (AdminHandler)

	mu       sync.Mutex
	handlers map[string]jobs.Handler
	bg       sync.WaitGroup
}

// Migrate creates or upgrades every table the merchant uses (jobs, handoff,
// merchant). Safe to run from several processes at once.
func Migrate(ctx context.Context, d *db.DB) error {
	if err := jobs.Migrate(ctx, d); err != nil {
		return fmt.Errorf("merchant: jobs migrations: %w", err)
	}
	if err := handoff.Migrate(ctx, d); err != nil {
		return err
	}
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("merchant: migrations: %w", err)
	}
	if err := d.Migrate(ctx, "merchant", sub); err != nil {
		return fmt.Errorf("merchant: migrate: %w", err)
	}
	return nil
}

// New returns a merchant. It does not touch the database: call Migrate first.
func New(cfg Config, deps Deps) (*Merchant, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("merchant: config: %w", err)
	}
	if deps.DB == nil {
		return nil, errors.New("merchant: Deps.DB is required")
	}
	m := &Merchant{cfg: cfg, db: deps.DB, clock: deps.Clock, log: deps.Logger, prov: deps.Provisioner, rand: deps.Rand, registry: deps.Registry}
	if m.clock == nil {
		m.clock = clock.Real{}
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.rand == nil {
		m.rand = rand.Reader
	}
	if m.registry == nil {
		m.registry = prometheus.NewRegistry()
	}
	client := deps.HTTPClient
	if client == nil {
		client = defaultHTTPClient()
	}
	m.orders = &OrderClient{BaseURL: cfg.MarketURL, FallbackURL: cfg.MarketFallbackURL, AK: cfg.MarketAK, SK: cfg.MarketSK, Client: client, Clock: m.clock}
	m.usage = &UsageClient{BaseURL: cfg.MarketURL, AccessKey: cfg.AccessKeys[0], Client: client, Clock: m.clock, Rand: m.rand}
	m.metrics = newMetrics(m.registry, m)
	m.group = newRequestGroup(m.db)
	m.startBatchers()
	m.deliver = &handoff.Deliverer{
		DB: m.db, Group: m.group, Clock: m.clock, Logger: m.log.With("component", "handoff"),
		Target:      m.targetFor(client),
		OnAnswer:    m.applyAnswer,
		OnResult:    m.metrics.handoffResult,
		MaxAttempts: cfg.WebhookMaxAttempts,
		Lease:       cfg.InlineTimeout + 15*time.Second,
	}
	m.handlers = map[string]jobs.Handler{
		handoff.JobKind: m.deliver.Handle,
		JobOrder:        m.handleOrderJob,
		JobUsagePush:    m.handleUsagePush,
	}
	m.routes()
	m.warnNoHandOff()
	return m, nil
}

// warnNoHandOff says at start how real instances get their appInfo when no
// vendor app receives events, and warns when nothing can complete them.
func (m *Merchant) warnNoHandOff() {
	switch {
	case m.prov != nil || m.cfg.WebhookURL != "":
	case m.cfg.AdminToken == "":
		m.log.Warn("no vendor app: with neither a webhook URL (--webhook-url, SOUK_WEBHOOK_URL) nor a management API token " +
			"(--admin-token, SOUK_ADMIN_TOKEN), real instances are created but can never be completed; newInstance and " +
			"queryInstance answer 000004 for them")
	default:
		m.log.Info("no webhook URL: the vendor app completes real instances with POST /api/v1/instances/{id}/appinfo")
	}
}

// Config returns the configuration in force (defaults applied).
func (m *Merchant) Config() Config { return m.cfg }

// Registry is the Prometheus registry the merchant's metrics live in.
func (m *Merchant) Registry() *prometheus.Registry { return m.registry }

// Handler serves the production address, the management API, /healthz,
// /readyz and /metrics.
func (m *Merchant) Handler() http.Handler { return m.unmatchedAudited(m.all) }

// PublicHandler serves the public side alone: the production address (and
// what Handle mounts: kit sync interfaces, single sign-on), /healthz and
// /readyz. With AdminHandler, for a merchant whose management API and metrics
// listen apart (`--admin-listen`).
func (m *Merchant) PublicHandler() http.Handler { return m.unmatchedAudited(m.public) }

// AdminHandler serves the admin side alone: the management API (and what
// HandleAdmin mounts: the kit directory API), /metrics, /healthz and /readyz.
func (m *Merchant) AdminHandler() http.Handler { return m.unmatchedAudited(m.admin) }

// Deliverer is the hand-off deliverer (for tools and tests).
func (m *Merchant) Deliverer() *handoff.Deliverer { return m.deliver }

// AddJobHandler registers another jobs handler run by Run (for packages that
// extend the merchant, such as merchant/kit). Call it before Run.
func (m *Merchant) AddJobHandler(kind string, h jobs.Handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handlers[kind] = h
}

func (m *Merchant) jobRunner() *jobs.Runner {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runner == nil {
		hs := make(map[string]jobs.Handler, len(m.handlers))
		for k, v := range m.handlers {
			hs[k] = v
		}
		m.runner = &jobs.Runner{DB: m.db, Clock: m.clock, Logger: m.log.With("component", "jobs"), Handlers: hs,
			MaxAttempts: 100}
	}
	return m.runner
}

// RunDue sweeps the hand-off's expired leases, then runs every job due now
// (tests with a virtual clock use it).
func (m *Merchant) RunDue(ctx context.Context) (int, error) {
	m.sweep(ctx)
	return m.jobRunner().RunDue(ctx)
}

// sweepEvery is how often Run sweeps the hand-off's expired leases (real
// time): an event whose inline attempt was cut off by a crash is delivered by
// its job at most this long after its lease ran out.
const sweepEvery = 5 * time.Second

// sweep enqueues the jobs of events whose inline attempt ended with no
// outcome recorded (handoff.Sweep).
func (m *Merchant) sweep(ctx context.Context) {
	n, err := handoff.Sweep(ctx, m.db, m.clock.Now())
	if err != nil && ctx.Err() == nil {
		m.log.Error("hand-off sweep", "err", err)
	}
	if n > 0 {
		m.metrics.swept.Add(float64(n))
		m.log.Warn("hand-off events whose inline attempt was interrupted are queued for delivery", "events", n)
		m.wake()
	}
}

// wake asks the job runner to poll now (after a commit of new work).
func (m *Merchant) wake() {
	m.mu.Lock()
	r := m.runner
	m.mu.Unlock()
	if r != nil {
		r.Wake()
	}
}

// Run does the background work until ctx is done: the job runner (hand-off
// deliveries, Query Order retries, usage pushes), the sweep of the
// hand-off's expired leases, and housekeeping (nonce and audit pruning).
func (m *Merchant) Run(ctx context.Context) error {
	r := m.jobRunner()
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	st := time.NewTicker(sweepEvery)
	defer st.Stop()
	m.housekeep(ctx)
	m.sweep(ctx)
	for {
		select {
		case <-ctx.Done():
			err := <-errc
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		case err := <-errc:
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("merchant: job runner: %w", err)
			}
			return nil
		case <-t.C:
			m.housekeep(ctx)
		case <-st.C:
			m.sweep(ctx)
		}
	}
}

// housekeep prunes old nonces and audit rows, and checks this process's
// clock against the database server's.
func (m *Merchant) housekeep(ctx context.Context) {
	m.checkClock(ctx)
	now := m.clock.Now()
	if n, err := m.pruneNonces(ctx, now); err != nil {
		if ctx.Err() != nil {
			return // stopping
		}
		m.log.Error("prune nonces", "err", err)
	} else if n > 0 {
		m.log.Debug("pruned nonces", "count", n)
	}
	if n, err := m.pruneAudit(ctx, now); err != nil {
		if ctx.Err() != nil {
			return
		}
		m.log.Error("prune audit log", "err", err)
	} else if n > 0 {
		m.log.Debug("pruned audit records", "count", n)
	}
}

// outboundIdleConns is how many idle keep-alive connections the default
// outbound client keeps per host.
const outboundIdleConns = 64

// defaultHTTPClient is the client of the outbound calls (Query Order, usage
// push, webhooks) when Deps gives none. Go's default transport keeps two
// idle connections per host: under concurrent creates, every Query Order
// beyond the second would open (and for KooGallery, handshake) a new TLS
// connection and close it after the answer. This one keeps up to
// outboundIdleConns per host (TestDefaultHTTPClientReusesConnections).
func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 4 * outboundIdleConns
	t.MaxIdleConnsPerHost = outboundIdleConns
	return &http.Client{Transport: t, Timeout: 10 * time.Second}
}

// newUUID returns a random (version 4) UUID.
func newUUID(r io.Reader) string {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if _, err := rand.Read(b[:]); err != nil {
			panic(fmt.Sprintf("merchant: crypto/rand: %v", err))
		}
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// inline makes the delivery attempt of an event right away, in the
// background (attempt: AttemptStored or AttemptClaimed, the request's
// transaction having claimed the event), and waits for it until ctx is done
// (the request budget). The attempt itself is not cut short by the budget: a
// slow vendor app still completes, and the instance becomes ready after the
// 000004 answer. The event's job is the durable fallback if the process dies
// meanwhile.
func (m *Merchant) inline(ctx context.Context, eventID string, attempt func(context.Context, string) (bool, error)) (delivered bool) {
	done := make(chan bool, 1)
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		// A panic here would end the process (the HTTP server's recovery
		// covers the handler's goroutine only): the attempt is reported
		// failed instead, and the event's job retries it.
		defer func() {
			if r := recover(); r != nil {
				m.log.Error("inline hand-off panicked; its job will retry", "event", eventID, "panic", r, "stack", string(debug.Stack()))
				done <- false
			}
		}()
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.InlineTimeout)
		defer cancel()
		ok, err := attempt(actx, eventID)
		if err != nil {
			m.log.Info("inline hand-off did not complete; its job will retry", "event", eventID, "err", err)
		}
		done <- ok
	}()
	select {
	case ok := <-done:
		return ok
	case <-ctx.Done():
		return false
	}
}

// Close waits for background hand-off attempts started by requests, then
// stops the group committer.
func (m *Merchant) Close() error {
	m.bg.Wait()
	m.stopBatchers()
	if m.group != nil {
		m.group.Close()
	}
	return nil
}

// NewHTTPServer is the HTTP server `souk merchant` serves h with (and the
// one `souk bench` measures): header, body and idle timeouts well above
// KooGallery's 5 s calls, and the server's own errors logged as warnings.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
