package sellertools

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/market"
)

// Run kinds.
const (
	RunScheduled = "scheduled" // a dial-test slot
	RunManual    = "manual"    // run now (RunNow, Unfreeze)
)

// Run is one dial test of one product: its saved cases replayed.
type Run struct {
	ID         int64        `json:"id"`
	Slot       string       `json:"slot"`
	Kind       string       `json:"kind"`
	ProductID  string       `json:"productId"`
	SellerID   string       `json:"sellerId"`
	Day        string       `json:"day"` // in the market's time zone
	StartedAt  time.Time    `json:"startedAt"`
	FinishedAt time.Time    `json:"finishedAt"`
	Passed     bool         `json:"passed"`
	Cases      int          `json:"cases"`
	Failures   int          `json:"failures"`
	FailStreak int          `json:"failStreak"` // consecutive failing days after this run
	Froze      bool         `json:"froze"`      // this run froze the product
	Note       string       `json:"note,omitempty"`
	Results    []CaseResult `json:"results,omitempty"`
}

// CaseResult is the replay of one case in a run.
type CaseResult struct {
	CaseID     int64     `json:"caseId"`
	Activity   string    `json:"activity"`
	Name       string    `json:"name"`
	MessageID  int64     `json:"messageId,omitempty"`
	RequestURL string    `json:"requestUrl,omitempty"`
	HTTPStatus int       `json:"httpStatus"`
	ResultCode string    `json:"resultCode,omitempty"`
	Verdict    string    `json:"verdict"`
	Passed     bool      `json:"passed"`
	Error      string    `json:"error,omitempty"`
	LatencyMS  int64     `json:"latencyMs"`
	At         time.Time `json:"at"`
}

type slotPayload struct {
	Slot string `json:"slot"` // RFC 3339 in the market's time zone
}

type productPayload struct {
	Slot      string `json:"slot"`
	ProductID string `json:"productId"`
}

// nextSlot returns the first dial-test slot strictly after t.
func (t *Tools) nextSlot(after time.Time) time.Time {
	local := after.In(t.loc)
	y, mo, d := local.Date()
	for day := 0; day < 3; day++ {
		for _, s := range t.slots {
			c := time.Date(y, mo, d+day, s.hour, s.min, 0, 0, t.loc)
			if c.After(after) {
				return c
			}
		}
	}
	panic("sellertools: no dial slot within three days") // unreachable: New requires at least one slot
}

func (t *Tools) slotKey(s time.Time) string { return s.In(t.loc).Format(time.RFC3339) }

func (t *Tools) day(at time.Time) string { return at.In(t.loc).Format(time.DateOnly) }

func (t *Tools) prevDay(day string) string {
	d, err := time.ParseInLocation(time.DateOnly, day, t.loc)
	if err != nil {
		return ""
	}
	return d.AddDate(0, 0, -1).Format(time.DateOnly)
}

func (t *Tools) enqueueSlot(ctx context.Context, tx *db.Tx, now, slot time.Time) (bool, error) {
	key := t.slotKey(slot)
	p, _ := json.Marshal(slotPayload{Slot: key})
	_, inserted, err := jobs.Enqueue(ctx, tx, now, jobs.New{Kind: JobDialSlot, Key: "sellertools.dial:" + key, Payload: p, DueAt: slot})
	if err != nil {
		return false, fmt.Errorf("sellertools: schedule dial slot %s: %w", key, err)
	}
	return inserted, nil
}

// EnsureSchedule makes sure the next dial-test slot (at or after now) is a
// pending job, and returns its time. Idempotent across replicas: the slot's
// job has a unique key.
func (t *Tools) EnsureSchedule(ctx context.Context) (time.Time, error) {
	now := t.clock.Now()
	slot := t.nextSlot(now.Add(-time.Millisecond))
	var inserted bool
	err := t.db.Tx(ctx, func(tx *db.Tx) error {
		var err error
		inserted, err = t.enqueueSlot(ctx, tx, now, slot)
		return err
	})
	if err != nil {
		return time.Time{}, err
	}
	if inserted {
		t.m.Wake()
	}
	return slot, nil
}

// handleSlot runs at a slot: it schedules the dial test of every product on
// sale (or frozen, to keep its history) and the next slot, in one transaction.
func (t *Tools) handleSlot(ctx context.Context, j *jobs.Job) error {
	var p slotPayload
	if err := json.Unmarshal(j.Payload, &p); err != nil {
		return jobs.Permanent(fmt.Errorf("sellertools: slot payload: %w", err))
	}
	slot, err := time.Parse(time.RFC3339, p.Slot)
	if err != nil {
		return jobs.Permanent(fmt.Errorf("sellertools: slot payload: %w", err))
	}
	now := t.clock.Now()
	n := 0
	err = t.db.Tx(ctx, func(tx *db.Tx) error {
		n = 0
		rows, err := tx.Query(ctx, `SELECT product_id FROM sellertools_listings WHERE status IN ($1, $2) ORDER BY product_id`, StatusOnSale, StatusFrozen)
		if err != nil {
			return err
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range ids {
			pp, _ := json.Marshal(productPayload{Slot: p.Slot, ProductID: id})
			if _, _, err := jobs.Enqueue(ctx, tx, now, jobs.New{Kind: JobDialProduct, Key: "sellertools.dial:" + p.Slot + ":" + id, Payload: pp, DueAt: now}); err != nil {
				return err
			}
			n++
		}
		next := slot
		if now.After(next) {
			next = now // a late slot (the market was down): skip the missed ones
		}
		_, err = t.enqueueSlot(ctx, tx, now, t.nextSlot(next))
		return err
	})
	if err != nil {
		return fmt.Errorf("sellertools: dial slot %s: %w", p.Slot, err)
	}
	t.log.InfoContext(ctx, "sellertools: dial-test slot", "slot", p.Slot, "products", n)
	t.m.Wake()
	return nil
}

// handleProduct runs the dial test of one product in one slot.
func (t *Tools) handleProduct(ctx context.Context, j *jobs.Job) error {
	var p productPayload
	if err := json.Unmarshal(j.Payload, &p); err != nil {
		return jobs.Permanent(fmt.Errorf("sellertools: dial payload: %w", err))
	}
	slot, err := time.Parse(time.RFC3339, p.Slot)
	if err != nil {
		return jobs.Permanent(fmt.Errorf("sellertools: dial payload: %w", err))
	}
	_, err = t.runProduct(ctx, p.ProductID, p.Slot, RunScheduled, slot, false)
	if errors.Is(err, errSkipped) {
		return nil
	}
	if market.IsNotFound(err) {
		return jobs.Permanent(err)
	}
	return err
}

var errSkipped = errors.New("sellertools: product not on sale; dial test skipped")

// RunNow dial-tests a product at once (any status; the failure streak of a
// product on sale or frozen counts it like a scheduled run).
func (t *Tools) RunNow(ctx context.Context, productID string) (Run, error) {
	slot, err := t.nonce()
	if err != nil {
		return Run{}, err
	}
	return t.runProduct(ctx, productID, "manual:"+slot[:16], RunManual, t.clock.Now(), false)
}

// Unfreeze dial-tests a frozen product at once and puts it back on sale when
// every case passes. The run is returned either way; the listing tells.
func (t *Tools) Unfreeze(ctx context.Context, productID string) (Run, Listing, error) {
	l, err := t.Status(ctx, productID)
	if err != nil {
		return Run{}, Listing{}, err
	}
	if l.Status != StatusFrozen {
		return Run{}, Listing{}, conflict("product %s is %s, not frozen", productID, l.Status)
	}
	slot, err := t.nonce()
	if err != nil {
		return Run{}, Listing{}, err
	}
	run, err := t.runProduct(ctx, productID, "manual:"+slot[:16], RunManual, t.clock.Now(), true)
	if err != nil {
		return Run{}, Listing{}, err
	}
	l, err = t.Status(ctx, productID)
	return run, l, err
}

// runProduct replays a product's saved cases and records the run, its
// results and the product's new streak (and freeze) in one transaction.
func (t *Tools) runProduct(ctx context.Context, productID, slot, kind string, at time.Time, unfreeze bool) (Run, error) {
	p, err := t.m.GetProduct(ctx, productID)
	if err != nil {
		return Run{}, err
	}
	l, err := getListing(ctx, t.db, p.ID, p.SellerID, false)
	if err != nil {
		return Run{}, err
	}
	if kind == RunScheduled {
		if l.Status != StatusOnSale && l.Status != StatusFrozen {
			return Run{}, errSkipped
		}
		var id int64
		err := t.db.QueryRow(ctx, `SELECT id FROM sellertools_dial_runs WHERE slot = $1 AND product_id = $2`, slot, p.ID).Scan(&id)
		if err == nil {
			return t.GetRun(ctx, id) // recorded by an earlier run of this job
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return Run{}, fmt.Errorf("sellertools: dial run: %w", err)
		}
	}
	cases, err := t.ListCases(ctx, CaseFilter{ProductID: p.ID})
	if err != nil {
		return Run{}, err
	}
	run := Run{Slot: slot, Kind: kind, ProductID: p.ID, SellerID: p.SellerID, Day: t.day(at), StartedAt: t.clock.Now().UTC(), Cases: len(cases)}
	for _, c := range cases {
		r, err := t.replay(ctx, c)
		if err != nil {
			return Run{}, err
		}
		if !r.Passed {
			run.Failures++
		}
		run.Results = append(run.Results, r)
	}
	run.Passed = len(cases) > 0 && run.Failures == 0
	if len(cases) == 0 {
		run.Note = "no saved debug cases to replay"
	}
	run.FinishedAt = t.clock.Now().UTC()
	err = t.db.Tx(ctx, func(tx *db.Tx) error {
		run.ID, run.Froze = 0, false
		err := tx.QueryRow(ctx, `INSERT INTO sellertools_dial_runs (slot, kind, product_id, seller_id, day, started_at, finished_at, passed,
			cases, failures, fail_streak, note) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,0,$11)
			ON CONFLICT (slot, product_id) DO NOTHING RETURNING id`,
			run.Slot, run.Kind, run.ProductID, run.SellerID, run.Day, db.Millis(run.StartedAt), db.Millis(run.FinishedAt), db.Bool(run.Passed),
			run.Cases, run.Failures, run.Note).Scan(&run.ID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // another replica recorded this slot
		}
		if err != nil {
			return err
		}
		for i, r := range run.Results {
			if _, err := tx.Exec(ctx, `INSERT INTO sellertools_dial_results (run_id, case_id, seq, activity, name, message_id, request_url,
				http_status, result_code, verdict, passed, error, latency_ms, at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)`,
				run.ID, r.CaseID, i, r.Activity, r.Name, r.MessageID, r.RequestURL, r.HTTPStatus, r.ResultCode, r.Verdict, db.Bool(r.Passed),
				r.Error, r.LatencyMS, db.Millis(r.At)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE sellertools_cases SET last_dial_at = $1, last_dial_passed = $2, last_dial_error = $3 WHERE id = $4`,
				db.Millis(r.At), db.Bool(r.Passed), r.Error, r.CaseID); err != nil {
				return err
			}
		}
		cur, err := getListing(ctx, tx, p.ID, p.SellerID, tx.Dialect == db.Postgres)
		if err != nil {
			return err
		}
		if cur.Status == StatusOnSale || cur.Status == StatusFrozen {
			next, froze := t.nextStreak(cur, run.Day, run.Passed, unfreeze, t.clock.Now().UTC())
			run.Froze = froze
			if err := t.upsertListing(ctx, tx, next); err != nil {
				return err
			}
			cur = next
		}
		run.FailStreak = cur.FailStreak
		_, err = tx.Exec(ctx, `UPDATE sellertools_dial_runs SET fail_streak = $1, froze = $2 WHERE id = $3`, run.FailStreak, db.Bool(run.Froze), run.ID)
		return err
	})
	if err != nil {
		return Run{}, fmt.Errorf("sellertools: record dial run of %s: %w", p.ID, err)
	}
	if run.ID == 0 {
		var id int64
		if err := t.db.QueryRow(ctx, `SELECT id FROM sellertools_dial_runs WHERE slot = $1 AND product_id = $2`, slot, p.ID).Scan(&id); err != nil {
			return Run{}, fmt.Errorf("sellertools: dial run: %w", err)
		}
		return t.GetRun(ctx, id)
	}
	lvl := t.log.InfoContext
	if !run.Passed {
		lvl = t.log.WarnContext
	}
	lvl(ctx, "sellertools: dial test", "product", p.ID, "slot", slot, "passed", run.Passed, "cases", run.Cases,
		"failures", run.Failures, "failStreak", run.FailStreak, "froze", run.Froze)
	return run, nil
}

// nextStreak applies a run's outcome to a listing: a passing run resets the
// streak (and, when unfreezing, puts a frozen product back on sale); a failing
// one counts its day once, consecutive days adding up, and the product is
// frozen when the streak reaches FreezeAfterDays.
func (t *Tools) nextStreak(l Listing, day string, passed, unfreeze bool, now time.Time) (Listing, bool) {
	froze := false
	if passed {
		l.FailStreak, l.StreakStartDay, l.LastFailDay = 0, "", ""
		if unfreeze && l.Status == StatusFrozen {
			l.Status, l.FrozenAt, l.Note = StatusOnSale, time.Time{}, "unfrozen after a passing dial test"
		}
		l.UpdatedAt = now
		return l, false
	}
	switch {
	case l.FailStreak > 0 && l.LastFailDay == day:
		// this day already counts
	case l.FailStreak > 0 && l.LastFailDay == t.prevDay(day):
		l.FailStreak++
		l.LastFailDay = day
	default:
		l.FailStreak, l.StreakStartDay, l.LastFailDay = 1, day, day
	}
	if l.FailStreak >= t.freezeDays && l.Status == StatusOnSale {
		l.Status, l.FrozenAt = StatusFrozen, now
		l.Note = fmt.Sprintf("frozen: dial tests failed %d consecutive days (%s to %s); transactions frozen and product hidden",
			l.FailStreak, l.StreakStartDay, day)
		froze = true
	}
	l.UpdatedAt = now
	return l, froze
}

// replay sends one saved case again, as a debugging request (testFlag "1")
// and, for newInstance, with a fresh businessId.
// Only database failures are errors; every call failure is a failed result.
func (t *Tools) replay(ctx context.Context, c Case) (CaseResult, error) {
	r := CaseResult{CaseID: c.ID, Activity: c.Activity, Name: c.Name, At: t.clock.Now().UTC(), Verdict: market.VerdictFailure}
	iface, ok := lookupInterface(c.Activity)
	if !ok {
		r.Error = "unknown interface " + c.Activity
		return r, nil
	}
	params := map[string]string{}
	for k, v := range c.Params {
		params[k] = v
	}
	for _, prm := range iface.Params {
		if prm.Name == "testFlag" {
			params["testFlag"] = "1" // dial tests are debugging requests, whatever the case was saved with
		}
	}
	if _, ok := params["businessId"]; ok {
		id, err := t.uuid()
		if err != nil {
			return r, err
		}
		params["businessId"] = id
	}
	body, err := buildBody(iface, params)
	if err != nil {
		r.Error = "saved parameters: " + err.Error()
		return r, nil
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := t.m.Call(cctx, market.Outbound{SellerID: c.SellerID, Activity: c.Activity, URL: c.URL, KeyType: c.KeyType, Body: body})
	if err != nil {
		if isMarketError(err) { // e.g. the seller removed the access key
			r.Error = err.Error()
			return r, nil
		}
		return r, err
	}
	j := judge(Command{}, res)
	r.MessageID, r.RequestURL, r.HTTPStatus, r.ResultCode, r.Verdict, r.Passed, r.Error, r.LatencyMS =
		res.MessageID, res.RequestURL, res.HTTPStatus, res.ResultCode, res.Verdict, j.Passed, res.Error, j.LatencyMS
	return r, nil
}

const runCols = `id, slot, kind, product_id, seller_id, day, started_at, finished_at, passed, cases, failures, fail_streak, froze, note`

func scanRun(s scanner) (Run, error) {
	var r Run
	var started, finished int64
	var passed, froze int
	if err := s.Scan(&r.ID, &r.Slot, &r.Kind, &r.ProductID, &r.SellerID, &r.Day, &started, &finished, &passed, &r.Cases, &r.Failures,
		&r.FailStreak, &froze, &r.Note); err != nil {
		return Run{}, err
	}
	r.StartedAt, r.FinishedAt, r.Passed, r.Froze = db.FromMillis(started), db.FromMillis(finished), passed == 1, froze == 1
	return r, nil
}

// GetRun returns a dial-test run with its per-case results.
func (t *Tools) GetRun(ctx context.Context, id int64) (Run, error) {
	r, err := scanRun(t.db.QueryRow(ctx, `SELECT `+runCols+` FROM sellertools_dial_runs WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, notFound("dial-test run", strconv.FormatInt(id, 10))
	}
	if err != nil {
		return Run{}, fmt.Errorf("sellertools: get run: %w", err)
	}
	rows, err := t.db.Query(ctx, `SELECT case_id, activity, name, message_id, request_url, http_status, result_code, verdict, passed, error,
		latency_ms, at FROM sellertools_dial_results WHERE run_id = $1 ORDER BY seq`, id)
	if err != nil {
		return Run{}, fmt.Errorf("sellertools: get run results: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c CaseResult
		var passed int
		var at int64
		if err := rows.Scan(&c.CaseID, &c.Activity, &c.Name, &c.MessageID, &c.RequestURL, &c.HTTPStatus, &c.ResultCode, &c.Verdict, &passed,
			&c.Error, &c.LatencyMS, &at); err != nil {
			return Run{}, fmt.Errorf("sellertools: get run results: %w", err)
		}
		c.Passed, c.At = passed == 1, db.FromMillis(at)
		r.Results = append(r.Results, c)
	}
	return r, rows.Err()
}

// RunFilter selects dial-test runs; empty fields match everything.
type RunFilter struct {
	SellerID  string
	ProductID string
	Limit     int // default 100, at most 1000
}

// ListRuns returns dial-test runs, newest first, without their results.
func (t *Tools) ListRuns(ctx context.Context, f RunFilter) ([]Run, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	rows, err := t.db.Query(ctx, `SELECT `+runCols+` FROM sellertools_dial_runs
		WHERE ($1 = '' OR seller_id = $1) AND ($2 = '' OR product_id = $2) ORDER BY started_at DESC, id DESC LIMIT $3`,
		f.SellerID, f.ProductID, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("sellertools: list runs: %w", err)
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("sellertools: list runs: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Schedule describes the dial-test schedule.
type Schedule struct {
	Location        string      `json:"location"`
	Times           []string    `json:"times"`
	FreezeAfterDays int         `json:"freezeAfterDays"`
	PendingSlots    []time.Time `json:"pendingSlots"` // slot jobs waiting
}

// Schedule returns the dial-test schedule and the pending slot jobs.
func (t *Tools) Schedule(ctx context.Context) (Schedule, error) {
	s := Schedule{Location: t.loc.String(), FreezeAfterDays: t.freezeDays, PendingSlots: []time.Time{}}
	for _, st := range t.slots {
		s.Times = append(s.Times, fmt.Sprintf("%02d:%02d", st.hour, st.min))
	}
	js, err := jobs.List(ctx, t.db, jobs.Filter{Kind: JobDialSlot, State: jobs.StatePending, Limit: 100})
	if err != nil {
		return Schedule{}, fmt.Errorf("sellertools: schedule: %w", err)
	}
	for _, j := range js {
		s.PendingSlots = append(s.PendingSlots, j.DueAt.UTC())
	}
	return s, nil
}

// Day sums up one market day of a product's dial tests.
type Day struct {
	Day        string `json:"day"` // YYYY-MM-DD in the market's time zone
	Runs       int    `json:"runs"`
	Failed     int    `json:"failed"` // failing runs
	Passed     bool   `json:"passed"` // no failing run that day
	FailStreak int    `json:"failStreak"`
	Froze      bool   `json:"froze"`
}

// History returns a product's dial-test days, newest first (at most limit
// days; default 30): what the five-day freeze rule looks at.
func (t *Tools) History(ctx context.Context, productID string, limit int) ([]Day, error) {
	if _, err := t.product(ctx, productID); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 366 {
		limit = 30
	}
	rows, err := t.db.Query(ctx, `SELECT day, COUNT(*), SUM(1 - passed), MAX(froze),
		(SELECT r2.fail_streak FROM sellertools_dial_runs r2 WHERE r2.product_id = r.product_id AND r2.day = r.day ORDER BY r2.started_at DESC, r2.id DESC LIMIT 1)
		FROM sellertools_dial_runs r WHERE product_id = $1 GROUP BY product_id, day ORDER BY day DESC LIMIT $2`, productID, limit)
	if err != nil {
		return nil, fmt.Errorf("sellertools: history: %w", err)
	}
	defer rows.Close()
	var out []Day
	for rows.Next() {
		var d Day
		var froze int
		if err := rows.Scan(&d.Day, &d.Runs, &d.Failed, &froze, &d.FailStreak); err != nil {
			return nil, fmt.Errorf("sellertools: history: %w", err)
		}
		d.Passed, d.Froze = d.Failed == 0, froze == 1
		out = append(out, d)
	}
	return out, rows.Err()
}
