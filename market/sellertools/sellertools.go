// Package sellertools is the market's Seller Center application tools
// (卖家中心 → 应用工具), as KooGallery offers them to sellers:
//
//   - the interface debugging tool (接口调试): pick a product and an interface
//     tab, fill the parameters (testFlag "1" and MOCK… orders by default),
//     generate the signed request command, send it through the market's
//     signing and message log, and see the answer and its verdict;
//   - debug-case management (调试用例管理): "debug and save case" saves a case
//     only when its call passed; cases are listed, shown and deleted, and a
//     product can go on sale only with passing cases for every mandatory
//     interface of its charging modes (Readiness);
//   - dial tests (拨测): twice a day, at slots of the market's time zone, the
//     saved cases of every product on sale are replayed against its
//     production address; runs and per-case results are recorded, and after
//     five consecutive days with a failing dial test the product is frozen
//     (transactions frozen, hidden), as KooGallery does.
//
// Dial tests are durable jobs on the market's job runner, due at slot times of
// the injected clock, so the market's virtual clock drives them; one job per
// slot (and per product and slot) with a unique key, so replicas never run a
// slot twice.
package sellertools

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/market"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Job kinds registered on the market's job runner.
const (
	JobDialSlot    = "sellertools.dialslot"    // one dial-test slot: fans out to the products on sale
	JobDialProduct = "sellertools.dialproduct" // the dial test of one product in one slot
)

// Listing statuses of a product.
const (
	StatusDraft   = "draft"    // never put on sale (no row)
	StatusOnSale  = "on_sale"  // on sale; dial-tested twice a day
	StatusFrozen  = "frozen"   // frozen by failing dial tests: no transactions, hidden
	StatusOffSale = "off_sale" // taken off sale by the seller or an admin
)

// Defaults.
const (
	DefaultFreezeAfterDays = 5
)

// DefaultLocation is the market's time zone by default: China Standard Time
// (KooGallery's dial tests run in the morning and afternoon, Beijing time).
var DefaultLocation = time.FixedZone("UTC+8", 8*3600)

// DefaultDialTimes are the dial-test slots of a day.
var DefaultDialTimes = []string{"09:00", "15:00"}

// Options configures the seller tools.
type Options struct {
	// Location is the market's time zone: dial-test slots and "days" of the
	// failure streak follow it. nil → DefaultLocation.
	Location *time.Location
	// DialTimes are the slots of a day, "HH:MM" in Location. nil → DefaultDialTimes.
	DialTimes []string
	// FreezeAfterDays is how many consecutive days with a failing dial test
	// freeze a product. 0 → DefaultFreezeAfterDays.
	FreezeAfterDays int
	// RequireOnSale makes CheckPurchasable refuse products never put on sale
	// (by default only frozen and off-sale products are refused).
	RequireOnSale bool
	// Rand draws businessIds and nonces; nil → crypto/rand.
	Rand io.Reader
}

type slotTime struct{ hour, min int }

// Tools is the seller tools of one market replica.
type Tools struct {
	m             *market.Market
	db            *db.DB
	clock         clock.Clock
	log           *slog.Logger
	loc           *time.Location
	slots         []slotTime
	freezeDays    int
	requireOnSale bool
	rand          io.Reader
}

// New returns the seller tools of a market and registers the dial-test job
// handlers on the market's job runner (market.AddJobHandlers): call it at
// wiring time, before the market's Run, RunDue or Advance. d and clk are
// normally m.DB() and m.Clock().
func New(m *market.Market, d *db.DB, clk clock.Clock, logger *slog.Logger, opts Options) (*Tools, error) {
	if m == nil || d == nil || clk == nil {
		return nil, errors.New("sellertools: market, database and clock are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := &Tools{m: m, db: d, clock: clk, log: logger, loc: opts.Location, freezeDays: opts.FreezeAfterDays,
		requireOnSale: opts.RequireOnSale, rand: opts.Rand}
	if t.loc == nil {
		t.loc = DefaultLocation
	}
	if t.freezeDays <= 0 {
		t.freezeDays = DefaultFreezeAfterDays
	}
	if t.rand == nil {
		t.rand = rand.Reader
	}
	times := opts.DialTimes
	if len(times) == 0 {
		times = DefaultDialTimes
	}
	slots, err := parseDialTimes(times)
	if err != nil {
		return nil, err
	}
	t.slots = slots
	if err := m.AddJobHandlers(map[string]jobs.Handler{
		JobDialSlot:    t.handleSlot,
		JobDialProduct: t.handleProduct,
	}); err != nil {
		return nil, fmt.Errorf("sellertools: %w", err)
	}
	return t, nil
}

// Install is the whole wiring of the seller tools in a market process: New
// (with the market's database and clock), Migrate and Mount on rt. Call it
// before the market's Run.
func Install(ctx context.Context, m *market.Market, rt *market.Router, logger *slog.Logger, opts Options) (*Tools, error) {
	t, err := New(m, m.DB(), m.Clock(), logger, opts)
	if err != nil {
		return nil, err
	}
	if err := t.Migrate(ctx); err != nil {
		return nil, err
	}
	t.Mount(rt)
	return t, nil
}

// parseDialTimes reads "HH:MM" slots, sorted, without duplicates.
func parseDialTimes(times []string) ([]slotTime, error) {
	seen := map[slotTime]bool{}
	var out []slotTime
	for _, s := range times {
		h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
		hh, err1 := strconv.Atoi(h)
		mm, err2 := strconv.Atoi(m)
		if !ok || err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 || len(m) != 2 {
			return nil, fmt.Errorf("sellertools: dial time %q is not HH:MM", s)
		}
		st := slotTime{hh, mm}
		if !seen[st] {
			seen[st] = true
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].hour*60+out[i].min < out[j].hour*60+out[j].min
	})
	return out, nil
}

// Migrate creates or upgrades the seller tools' tables (after the market's
// Migrate, which creates the job queue) and schedules the next dial-test slot.
func (t *Tools) Migrate(ctx context.Context) error {
	if err := db.MigrateFS(ctx, t.db, "sellertools", migrationFiles, "migrations"); err != nil {
		return err
	}
	if _, err := t.EnsureSchedule(ctx); err != nil {
		return err
	}
	return nil
}

// Location returns the market time zone the tools use.
func (t *Tools) Location() *time.Location { return t.loc }

// Errors are *market.Error values, so that the JSON API answers like the
// market's own.
func badField(field, format string, args ...any) error {
	return &market.Error{Status: http.StatusBadRequest, Code: "bad_request", Field: field, Msg: fmt.Sprintf(format, args...)}
}

func notFound(what, id string) error {
	return &market.Error{Status: http.StatusNotFound, Code: "not_found", Msg: fmt.Sprintf("%s %q does not exist", what, id)}
}

func conflict(format string, args ...any) error {
	return &market.Error{Status: http.StatusConflict, Code: "conflict", Msg: fmt.Sprintf(format, args...)}
}

func refused(format string, args ...any) error {
	return &market.Error{Status: http.StatusUnprocessableEntity, Code: "refused", Msg: fmt.Sprintf(format, args...)}
}

func isMarketError(err error) bool {
	var me *market.Error
	return errors.As(err, &me)
}
